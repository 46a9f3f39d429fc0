package f4a;

import java.io.IOException;
import java.io.PrintStream;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import org.elasticsearch.Build;
import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.http.HttpServerTransport;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;
import org.elasticsearch.plugins.PluginBundle;
import org.elasticsearch.plugins.PluginsLoader;

/**
 * One real Elasticsearch node in this JVM: {@code org.elasticsearch.node.Node} built through its
 * public {@code Node(Environment, PluginsLoader)} constructor, with the modules (at least
 * {@code transport-netty4}, the real HTTP layer) loaded from a {@code modules/} directory laid out
 * the way the distribution lays it out (see install.sh). No distribution, no bin/elasticsearch,
 * no server CLI.
 *
 * <pre>
 * java -Xms512m -Xmx512m -cp CLASSES:JARS f4a.ElasticsearchLauncher \
 *      --data DIR [--modules DIR] [--home DIR] [--port N] [--port-file FILE] [-E key=value]...
 * </pre>
 *
 * {@code --modules} (default: the {@code f4a.es.modules} system property that install.sh puts in
 * {@code java.args}) is the modules directory install.sh lays out; {@code --home} defaults to
 * {@code DIR.home} beside the data path.
 *
 * Binds 127.0.0.1 only; {@code --port 0} (the default) takes a free port. Once the cluster is
 * yellow the bound HTTP port is printed on stdout, alone on a line (and written to --port-file);
 * the node's log goes to stderr. SIGTERM/SIGINT close the node and exit 0.
 *
 * What the distribution's bootstrap does and this does not: the server CLI's root refusal, the
 * bootstrap checks (only enforced for a non-loopback bind anyway), the entitlement agent (9.x)
 * and the native system-call filter. None of them changes how the node indexes or answers.
 */
public final class ElasticsearchLauncher {

    /** Node log to stderr (stdout carries only the port). */
    private static final String LOG4J2 = String.join("\n",
        "status = error",
        "appender.console.type = Console",
        "appender.console.name = console",
        "appender.console.target = SYSTEM_ERR",
        "appender.console.layout.type = PatternLayout",
        "appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] [%node_name]%marker %m%n",
        "rootLogger.level = ${sys:f4a.log.level:-info}",
        "rootLogger.appenderRef.console.ref = console",
        "logger.metadata.name = org.elasticsearch.cluster.metadata",
        "logger.metadata.level = warn",
        "logger.plugins.name = org.elasticsearch.plugins.PluginsService",
        "logger.plugins.level = warn",
        "");

    private static void usage(String error) {
        System.err.println("error: " + error);
        System.err.println("usage: ElasticsearchLauncher --data DIR [--modules DIR] [--home DIR] [--port N] [--port-file FILE] [-E key=value]...");
        System.exit(2);
    }

    public static void main(String[] args) throws Exception {
        PrintStream out = System.out;
        PrintStream err = System.err;
        String home = null, data = null, modules = System.getProperty("f4a.es.modules"), port = "0", portFile = null;
        Map<String, String> extra = new LinkedHashMap<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            String next = i + 1 < args.length ? args[i + 1] : null;
            switch (a) {
                case "--home": home = next; i++; break;
                case "--data": data = next; i++; break;
                case "--modules": modules = next; i++; break;
                case "--port": port = next; i++; break;
                case "--port-file": portFile = next; i++; break;
                case "-E": {
                    if (next == null || !next.contains("=")) usage("-E needs key=value");
                    int eq = next.indexOf('=');
                    extra.put(next.substring(0, eq), next.substring(eq + 1));
                    i++;
                    break;
                }
                default:
                    if (a.startsWith("-E") && a.contains("=")) {
                        int eq = a.indexOf('=');
                        extra.put(a.substring(2, eq), a.substring(eq + 1));
                    } else {
                        usage("unknown argument " + a);
                    }
            }
        }
        if (data == null) usage("--data is required");
        if (modules == null) usage("--modules (or -Df4a.es.modules) is required: the directory scripts/elasticsearch/install.sh lays out");
        Path dataPath = Paths.get(data).toAbsolutePath();
        Path homePath = home != null ? Paths.get(home).toAbsolutePath()
            : dataPath.resolveSibling(dataPath.getFileName() + ".home");
        Path modulesPath = Paths.get(modules).toAbsolutePath();
        if (!Files.isDirectory(modulesPath.resolve("transport-netty4"))) {
            usage(modulesPath + " has no transport-netty4 module: run scripts/elasticsearch/install.sh");
        }
        // Where the distribution's native libraries (zstd, vector distances) would be:
        // <home>/lib/platform. They are not on Maven Central; without them 9.x logs one warning
        // and runs its Java fallbacks (8.x uses JNA and needs none).
        if (System.getProperty("es.path.home") == null) {
            System.setProperty("es.path.home", homePath.toString());
        }
        Path config = homePath.resolve("config");
        Files.createDirectories(config);
        Files.createDirectories(dataPath);
        Files.createDirectories(homePath.resolve("logs"));
        Files.createDirectories(homePath.resolve("plugins"));
        // The node reads its modules from <home>/modules, as in the distribution.
        Path homeModules = homePath.resolve("modules");
        if (Files.isSymbolicLink(homeModules)) Files.delete(homeModules);
        if (!Files.exists(homeModules)) Files.createSymbolicLink(homeModules, modulesPath);
        Files.write(config.resolve("log4j2.properties"), LOG4J2.getBytes(StandardCharsets.UTF_8));

        Settings.Builder b = Settings.builder()
            .put("path.home", homePath.toString())
            .put("path.data", dataPath.toString())
            .put("path.logs", homePath.resolve("logs").toString())
            .put("cluster.name", "f4a-local")
            .put("node.name", "f4a-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", port)
            .put("transport.port", "0")
            .put("discovery.type", "single-node")
            // CI disks may be fuller than the 85% low watermark; tests that want the
            // watermarks turn this back on through the cluster settings API.
            .put("cluster.routing.allocation.disk.threshold_enabled", false);
        for (Map.Entry<String, String> e : extra.entrySet()) {
            b.put(e.getKey(), e.getValue());
        }
        Environment env = InternalSettingsPreparer.prepareEnvironment(
            b.build(), Map.of(), config, () -> "f4a-node");
        LogConfigurator.registerErrorListener();
        LogConfigurator.setNodeName("f4a-node");
        LogConfigurator.configure(env, true);

        Node node = new Node(env, pluginsLoader(env));
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                if (!node.awaitClose(30, TimeUnit.SECONDS)) {
                    err.println("[f4a] node did not close within 30 s");
                }
            } catch (Exception e) {
                err.println("[f4a] closing the node failed: " + e);
                Runtime.getRuntime().halt(1);
            }
            err.println("[f4a] node closed");
            err.flush();
            Runtime.getRuntime().halt(0);
        }, "f4a-shutdown"));
        try {
            node.start();
        } catch (Exception e) {
            err.println("[f4a] the node did not start: " + e);
            e.printStackTrace(err);
            Runtime.getRuntime().halt(1);
        }
        HttpServerTransport http = node.injector().getInstance(HttpServerTransport.class);
        int bound = http.boundAddress().publishAddress().getPort();
        waitForYellow(bound, err);
        if (portFile != null) {
            Path p = Paths.get(portFile);
            Path tmp = p.resolveSibling(p.getFileName() + ".tmp");
            Files.write(tmp, (bound + "\n").getBytes(StandardCharsets.UTF_8));
            Files.move(tmp, p, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        }
        out.println(bound);
        out.flush();
        err.println("[f4a] Elasticsearch " + Build.current().version() + " on JDK " + Runtime.version()
            + ": http://127.0.0.1:" + bound + " data " + dataPath);
        Thread.currentThread().join();
    }

    private static void waitForYellow(int port, PrintStream err) throws Exception {
        java.net.URL url = java.net.URI.create(
            "http://127.0.0.1:" + port + "/_cluster/health?wait_for_status=yellow&timeout=10s").toURL();
        long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(5);
        while (true) {
            java.net.HttpURLConnection c = (java.net.HttpURLConnection) url.openConnection();
            c.setConnectTimeout(5000);
            c.setReadTimeout(20000);
            try {
                if (c.getResponseCode() == 200) return;
            } catch (IOException e) {
                // not answering yet
            } finally {
                c.disconnect();
            }
            if (System.nanoTime() > deadline) {
                err.println("[f4a] cluster not yellow after 5 minutes");
                Runtime.getRuntime().halt(1);
            }
            Thread.sleep(200);
        }
    }

    /**
     * The modules and plugins of the home, loaded the way the distribution's bootstrap loads them
     * but without the entitlement policies (no agent here). 8.18/8.19 take the directory alone;
     * 9.x adds a flag that selects serverless-only bundles (false: a stateful node).
     */
    @SuppressWarnings("unchecked")
    private static PluginsLoader pluginsLoader(Environment env) throws Exception {
        Set<PluginBundle> modules, plugins;
        try {
            Method m = PluginsLoader.class.getMethod("loadModulesBundles", Path.class, boolean.class);
            Method p = PluginsLoader.class.getMethod("loadPluginsBundles", Path.class, boolean.class);
            modules = (Set<PluginBundle>) m.invoke(null, env.modulesDir(), false);
            plugins = (Set<PluginBundle>) p.invoke(null, env.pluginsDir(), false);
        } catch (NoSuchMethodException e) {
            Method m = PluginsLoader.class.getMethod("loadModulesBundles", Path.class);
            Method p = PluginsLoader.class.getMethod("loadPluginsBundles", Path.class);
            modules = (Set<PluginBundle>) m.invoke(null, env.modulesDir());
            plugins = (Set<PluginBundle>) p.invoke(null, env.pluginsDir());
        }
        // No qualified exports into the (non-modular) modules: the server is on the class path.
        return PluginsLoader.createPluginsLoader(modules, plugins, Map.of(), false);
    }

    private ElasticsearchLauncher() {}
}
