// Minimal in-process launcher for an Elasticsearch 9.x node built only from Maven Central jars
// (Maven Central has no Elasticsearch 9 distribution zip). Used by `cargo xtask services` for the
// `es9` line: java -cp 'classes:lib/*' org.elasticsearch.plugins.Launcher HTTP_PORT TRANSPORT_PORT HOME [key=value ...]
// It lives in package org.elasticsearch.plugins (a split package, fine on the plain classpath) only so that it
// can call the package-private PluginBundle / PluginsLoader constructors and register plugins that sit on the
// application classpath (transport-netty4, plus a tiny "GET /" plugin) as ordinary modules.
package org.elasticsearch.plugins;

import org.elasticsearch.Build;
import org.elasticsearch.client.internal.node.NodeClient;
import org.elasticsearch.cluster.node.DiscoveryNodes;
import org.elasticsearch.cluster.service.ClusterService;
import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.features.NodeFeature;
import org.elasticsearch.index.IndexVersion;
import org.elasticsearch.node.Node;
import org.elasticsearch.rest.BaseRestHandler;
import org.elasticsearch.rest.RestHandler;
import org.elasticsearch.rest.RestRequest;
import org.elasticsearch.rest.RestResponse;
import org.elasticsearch.rest.RestStatus;
import org.elasticsearch.xcontent.XContentBuilder;

import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.lang.reflect.Constructor;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.function.Supplier;

public final class Launcher {

    public static void main(String[] args) throws Exception {
        long t0 = System.nanoTime();
        int httpPort = Integer.parseInt(args[0]);
        int transportPort = Integer.parseInt(args[1]);
        if (args.length < 3) {
            throw new IllegalArgumentException("usage: Launcher HTTP_PORT TRANSPORT_PORT HOME [key=value ...]");
        }
        Path home = Path.of(args[2]).toAbsolutePath();
        for (String d : new String[] { "config", "data", "logs", "bundles/netty4", "bundles/root" }) {
            Files.createDirectories(home.resolve(d));
        }

        Settings.Builder extra = Settings.builder();
        for (int i = 3; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException("expected key=value, got [" + args[i] + "]");
            }
            extra.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        Settings settings = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", "es9-embedded")
            .put("node.name", "es9-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", httpPort)
            .put("transport.port", transportPort)
            .put("discovery.type", "single-node")
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("logger.level", System.getProperty("launcher.log.level", "INFO"))
            .put(extra.build())
            .build();

        // Route ES's own logging API to log4j; with no log4j2.properties, configureWithoutConfig keeps log4j's
        // default console configuration and applies logger.level.
        LogConfigurator.setNodeName("es9-node");
        LogConfigurator.configureWithoutConfig(settings);

        Environment env = new Environment(settings, home.resolve("config"));
        ClassLoader appLoader = Launcher.class.getClassLoader();

        // transport-netty4 ships its descriptor inside its jar.
        PluginDescriptor netty4;
        try (InputStream in = appLoader.getResourceAsStream("META-INF/es-plugins/transport-netty4/plugin-descriptor.properties")) {
            netty4 = PluginDescriptor.readInternalDescriptorFromStream(in);
        }
        PluginDescriptor root = PluginDescriptor.readInternalDescriptorFromStream(new ByteArrayInputStream(String.join("\n",
            "name=launcher-root",
            "description=GET / (the rest-root module is not published to Maven Central)",
            "version=" + Build.current().version(),
            "elasticsearch.version=" + Build.current().version(),
            "java.version=21",
            "classname=" + RootPlugin.class.getName()).getBytes(StandardCharsets.UTF_8)));

        // One "loaded layer" per plugin; its class loader is the application class loader (everything is on -cp).
        // PluginsLoader.LoadedPluginLayer is a private record, so it is built reflectively.
        Constructor<?> layerCtor = Class.forName(PluginsLoader.class.getName() + "$LoadedPluginLayer")
            .getDeclaredConstructor(PluginBundle.class, ClassLoader.class, ModuleLayer.class, ClassLoader.class, ModuleLayer.class);
        layerCtor.setAccessible(true);
        Set<PluginBundle> bundles = new LinkedHashSet<>();
        Map<String, Object> layers = new HashMap<>();
        for (var e : Map.of(netty4, "bundles/netty4", root, "bundles/root").entrySet()) {
            PluginBundle bundle = new PluginBundle(e.getKey(), home.resolve(e.getValue())); // empty dir: no jars of its own
            bundles.add(bundle);
            layers.put(e.getKey().getName(), layerCtor.newInstance(bundle, appLoader, ModuleLayer.boot(), appLoader, ModuleLayer.boot()));
        }
        @SuppressWarnings({ "unchecked", "rawtypes" })
        PluginsLoader pluginsLoader = new PluginsLoader(bundles, Set.of(), (Map) layers);

        // No entitlement bootstrap and no bootstrap checks (incl. the "can not run as root" check): those live in
        // org.elasticsearch.bootstrap.Elasticsearch, which we do not use.
        Node node = new Node(env, pluginsLoader);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                System.out.println("[launcher] stopping node");
                node.prepareForClose();
                node.close();
                System.out.println("[launcher] node closed cleanly=" + node.awaitClose(30, TimeUnit.SECONDS));
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "launcher-shutdown"));
        node.start();
        System.out.printf("[launcher] node started in %d ms, http on 127.0.0.1:%d%n", (System.nanoTime() - t0) / 1_000_000, httpPort);
        stopped.await();
    }

    /** Stand-in for the unpublished rest-root module: answers GET / and HEAD / like a real node. */
    public static final class RootPlugin extends Plugin implements ActionPlugin {
        private volatile ClusterService clusterService;

        public RootPlugin() {}

        @Override
        public Collection<?> createComponents(PluginServices services) {
            clusterService = services.clusterService();
            return List.of();
        }

        @Override
        public Collection<RestHandler> getRestHandlers(RestHandlersServices services, Supplier<DiscoveryNodes> nodesInCluster, Predicate<NodeFeature> features) {
            return List.of(new BaseRestHandler() {
                @Override
                public String getName() {
                    return "launcher_main_action";
                }

                @Override
                public List<Route> routes() {
                    return List.of(new Route(RestRequest.Method.GET, "/"), new Route(RestRequest.Method.HEAD, "/"));
                }

                @Override
                protected RestChannelConsumer prepareRequest(RestRequest request, NodeClient client) {
                    return channel -> {
                        Build build = Build.current();
                        XContentBuilder b = channel.newBuilder();
                        b.startObject()
                            .field("name", clusterService.localNode().getName())
                            .field("cluster_name", clusterService.getClusterName().value())
                            .field("cluster_uuid", clusterService.state().metadata().clusterUUID())
                            .startObject("version")
                            .field("number", build.qualifiedVersion())
                            .field("build_flavor", build.flavor())
                            .field("build_type", build.type().displayName())
                            .field("build_hash", build.hash())
                            .field("build_date", build.date())
                            .field("build_snapshot", build.isSnapshot())
                            .field("lucene_version", IndexVersion.current().luceneVersion().toString())
                            .field("minimum_wire_compatibility_version", build.minWireCompatVersion())
                            .field("minimum_index_compatibility_version", build.minIndexCompatVersion())
                            .endObject()
                            .field("tagline", "You Know, for Search")
                            .endObject();
                        channel.sendResponse(new RestResponse(RestStatus.OK, b));
                    };
                }
            });
        }
    }
}
