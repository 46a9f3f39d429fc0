package f4a.esroot;

import java.util.List;
import java.util.function.Supplier;

import org.elasticsearch.Build;
import org.elasticsearch.client.internal.node.NodeClient;
import org.elasticsearch.cluster.service.ClusterService;
import org.elasticsearch.index.IndexVersion;
import org.elasticsearch.node.Node;
import org.elasticsearch.rest.BaseRestHandler;
import org.elasticsearch.rest.RestRequest;
import org.elasticsearch.rest.RestResponse;
import org.elasticsearch.rest.RestStatus;
import org.elasticsearch.xcontent.XContentBuilder;

/**
 * {@code GET /} and {@code HEAD /}: the launcher's stand-in for Elasticsearch's
 * {@code rest-root} module, which Elastic ships in the distribution but does not publish on Maven
 * Central (since 8.9 the server jar has no handler for {@code /}, so a node built from Central
 * answers {@code GET /} with 405).
 *
 * Every value comes from the running node (its build, Lucene version, cluster name and UUID,
 * node name); the field set and order follow the distribution's response, pretty-printed by
 * default like the original. This is the one endpoint of the embedded node served by code that
 * is not Elastic's (scripts/elasticsearch/README.md); {@code _nodes/plugins} lists it as the
 * module {@code f4a-rest-root}.
 */
final class RootHandler extends BaseRestHandler {

    private final Supplier<ClusterService> clusterService;

    RootHandler(Supplier<ClusterService> clusterService) {
        this.clusterService = clusterService;
    }

    @Override
    public String getName() {
        return "f4a_main_action";
    }

    @Override
    public List<Route> routes() {
        return List.of(new Route(RestRequest.Method.GET, "/"), new Route(RestRequest.Method.HEAD, "/"));
    }

    @Override
    protected RestChannelConsumer prepareRequest(RestRequest request, NodeClient client) {
        // The original defaults to pretty printing unless ?pretty=false.
        boolean pretty = request.paramAsBoolean("pretty", true);
        return channel -> {
            ClusterService cs = clusterService.get();
            Build build = Build.current();
            XContentBuilder b = channel.newBuilder();
            if (pretty) b.prettyPrint();
            b.startObject();
            b.field("name", Node.NODE_NAME_SETTING.get(cs.getSettings()));
            b.field("cluster_name", cs.getClusterName().value());
            b.field("cluster_uuid", cs.state().metadata().clusterUUID());
            b.startObject("version")
                .field("number", build.qualifiedVersion())
                .field("build_flavor", build.flavor())
                .field("build_type", build.type().displayName())
                .field("build_hash", build.hash())
                .field("build_date", build.date())
                .field("build_snapshot", build.isSnapshot())
                .field("lucene_version", IndexVersion.current().luceneVersion().toString())
                .field("minimum_wire_compatibility_version", build.minWireCompatVersion())
                .field("minimum_index_compatibility_version", build.minIndexCompatVersion())
                .endObject();
            b.field("tagline", "You Know, for Search");
            b.endObject();
            channel.sendResponse(new RestResponse(RestStatus.OK, b));
        };
    }
}
