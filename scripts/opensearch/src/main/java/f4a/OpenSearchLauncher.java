package f4a;

import java.io.IOException;
import java.io.PrintStream;
import java.lang.reflect.Constructor;
import java.lang.reflect.Type;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.opensearch.Version;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.http.HttpServerTransport;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.plugins.PluginInfo;

/**
 * One real OpenSearch node in this JVM: {@code org.opensearch.node.Node} with the Netty 4 HTTP
 * transport and the modules listed in {@link #MODULES}, loaded from the classpath (no
 * distribution, no {@code bin/opensearch} script).
 *
 * <pre>
 * java -Xms512m -Xmx512m -cp CLASSES:JARS f4a.OpenSearchLauncher \
 *      --home DIR [--data DIR] [--port N] [--port-file FILE] [-E key=value]...
 * </pre>
 *
 * Binds 127.0.0.1 only. {@code --port 0} (the default) takes a free port. Once the node answers
 * HTTP, the bound port is printed on stdout, alone on a line (and written to --port-file); the
 * node's log goes to stderr. SIGTERM/SIGINT close the node (shards flushed, data path unlocked)
 * and exit 0; after SIGKILL the node starts again on the same data path and recovers from its
 * translog. {@code -E} settings override the defaults below, e.g.
 * {@code -E thread_pool.write.size=1 -E thread_pool.write.queue_size=2}.
 *
 * Works against 2.19.x (JDK 17) and 3.x (JDK 21+): the two differ in the protected Node
 * constructor (plugin classes vs. PluginInfo, same erasure) and in module class names.
 */
public final class OpenSearchLauncher {

    /** Module plugin classes; each entry lists the 3.x name and the 2.x name. */
    private static final String[][] MODULES = {
        {"org.opensearch.transport.Netty4ModulePlugin", "org.opensearch.transport.Netty4Plugin"},
        {"org.opensearch.analysis.common.CommonAnalysisModulePlugin", "org.opensearch.analysis.common.CommonAnalysisPlugin"},
        {"org.opensearch.index.mapper.MapperExtrasModulePlugin", "org.opensearch.index.mapper.MapperExtrasPlugin"},
        {"org.opensearch.index.reindex.ReindexModulePlugin", "org.opensearch.index.reindex.ReindexPlugin"},
        {"org.opensearch.painless.PainlessModulePlugin", "org.opensearch.painless.PainlessPlugin"},
    };

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
        // One line per index created / mapping updated is noise at test volume.
        "logger.metadata.name = org.opensearch.cluster.metadata",
        "logger.metadata.level = warn",
        "logger.plugins.name = org.opensearch.plugins.PluginsService",
        "logger.plugins.level = warn",
        "");

    /** A Node built from classpath plugins (the constructor the distribution's Bootstrap does not use). */
    static final class EmbeddedNode extends Node {
        @SuppressWarnings({"unchecked", "rawtypes"})
        EmbeddedNode(Environment env, Collection plugins) {
            // 2.x: Collection<Class<? extends Plugin>>; 3.x: Collection<PluginInfo>. Same erasure.
            super(env, plugins, true);
        }
    }

    private static void usage(String error) {
        System.err.println("error: " + error);
        System.err.println("usage: OpenSearchLauncher --home DIR [--data DIR] [--port N] [--port-file FILE] [-E key=value]...");
        System.exit(2);
    }

    public static void main(String[] args) throws Exception {
        // The node's logging setup redirects System.out/err into log4j: keep the real ones.
        PrintStream out = System.out;
        PrintStream err = System.err;
        String home = null, data = null, port = "0", portFile = null;
        Map<String, String> extra = new LinkedHashMap<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            String next = i + 1 < args.length ? args[i + 1] : null;
            switch (a) {
                case "--home": home = next; i++; break;
                case "--data": data = next; i++; break;
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
        if (home == null) usage("--home is required");
        Path homePath = Paths.get(home).toAbsolutePath();
        Path dataPath = data != null ? Paths.get(data).toAbsolutePath() : homePath.resolve("data");
        Path config = homePath.resolve("config");
        Files.createDirectories(config);
        Files.createDirectories(dataPath);
        Files.createDirectories(homePath.resolve("logs"));
        Files.createDirectories(homePath.resolve("plugins"));
        Files.createDirectories(homePath.resolve("modules"));
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
            // One node, no discovery; required before 3.5, harmless after.
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
        LogConfigurator.configure(env);

        Node node;
        try {
            node = new EmbeddedNode(env, plugins());
        } catch (Exception e) {
            // A bad -E setting ends here, e.g. "failed to parse value [1s] for setting [...]".
            err.println("[f4a] the node could not be built: " + e);
            e.printStackTrace(err);
            Runtime.getRuntime().halt(1);
            return;
        }
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
            // A clean stop is exit 0, not the JVM's 143 for SIGTERM.
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
        // After a restart the node answers HTTP before its shards are recovered (a search then
        // fails with 503 "all shards failed"): announce the port only once every primary is up.
        waitForYellow(bound, err);
        if (portFile != null) {
            Path p = Paths.get(portFile);
            Path tmp = p.resolveSibling(p.getFileName() + ".tmp");
            Files.write(tmp, (bound + "\n").getBytes(StandardCharsets.UTF_8));
            Files.move(tmp, p, java.nio.file.StandardCopyOption.REPLACE_EXISTING,
                java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        }
        out.println(bound);
        out.flush();
        err.println("[f4a] OpenSearch " + Version.CURRENT + " on JDK " + Runtime.version()
            + ": http://127.0.0.1:" + bound + " data " + dataPath);
        // The node's threads keep the JVM alive; the main thread just waits for a signal.
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
                if (c.getResponseCode() == 200) {
                    return;
                }
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

    /** Plugin classes (2.x) or PluginInfo (3.x), as this version's Node constructor wants them. */
    private static Collection<Object> plugins() throws Exception {
        Constructor<Node> ctor = Node.class.getDeclaredConstructor(
            Environment.class, Collection.class, boolean.class);
        Type element = ((java.lang.reflect.ParameterizedType) ctor.getGenericParameterTypes()[1])
            .getActualTypeArguments()[0];
        boolean wantsInfo = element == PluginInfo.class;
        List<Object> out = new ArrayList<>();
        for (String[] names : MODULES) {
            Class<? extends Plugin> cls = null;
            for (String n : names) {
                try {
                    cls = Class.forName(n).asSubclass(Plugin.class);
                    break;
                } catch (ClassNotFoundException e) {
                    // the other version's name
                }
            }
            if (cls == null) {
                throw new IllegalStateException("module not on the classpath: " + String.join(" or ", names));
            }
            if (wantsInfo) {
                out.add(new PluginInfo(cls.getName(), "classpath module", "NA", Version.CURRENT,
                    Integer.toString(Runtime.version().feature()), cls.getName(), List.of(), false));
            } else {
                out.add(cls);
            }
        }
        return out;
    }

    private OpenSearchLauncher() {}
}
