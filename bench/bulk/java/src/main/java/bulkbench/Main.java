package bulkbench;

import co.elastic.clients.elasticsearch.ElasticsearchClient;
import co.elastic.clients.elasticsearch._helpers.bulk.BulkIngester;
import co.elastic.clients.elasticsearch._helpers.bulk.BulkListener;
import co.elastic.clients.elasticsearch.core.BulkRequest;
import co.elastic.clients.elasticsearch.core.BulkResponse;
import co.elastic.clients.elasticsearch.core.bulk.BulkResponseItem;
import co.elastic.clients.json.jackson.Jackson3JsonpMapper;
import co.elastic.clients.transport.rest5_client.Rest5ClientTransport;
import co.elastic.clients.transport.rest5_client.low_level.Rest5Client;
import co.elastic.clients.util.BinaryData;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.zip.CRC32;

/**
 * The elasticsearch-java {@code BulkIngester} contender of {@code cargo xtask bench bulk}: indexes
 * the shared benchmark documents (see ../../README.md), handed over as pre-serialised JSON
 * ({@link BinaryData}), and prints one {@code BULK-BENCH-RESULT} line.
 */
public final class Main {
    private static final String[] LEVELS = {"INFO", "WARN", "ERROR", "DEBUG"};
    private static final String FILLER = "abcdefghijklmnopqrstuvwxyz".repeat(90);

    /** Document i of the shared generator, exactly {@code size} bytes long (ASCII only). */
    static byte[] doc(int i, int size) {
        StringBuilder b = new StringBuilder(size);
        b.append("{\"@timestamp\":").append(1700000000000L + 1000L * i)
                .append(",\"level\":\"").append(LEVELS[i % 4])
                .append("\",\"service\":\"svc-").append(i % 7)
                .append("\",\"message\":\"request ").append(i)
                .append(" handled by worker ").append(i % 16)
                .append(" in ").append(i % 997)
                .append(" ms\",\"n\":").append(i)
                .append(",\"pad\":\"");
        int pad = Math.max(size - b.length() - 2, 0);
        int off = i % 26;
        b.append(FILLER, off, off + pad).append("\"}");
        return b.toString().getBytes(StandardCharsets.US_ASCII);
    }

    static int docSize(String name) {
        switch (name) {
            case "small":
                return 200;
            case "large":
                return 2048;
            default:
                throw fail("--doc-size must be small or large, not " + name);
        }
    }

    static RuntimeException fail(String why) {
        System.err.println("java-bulk-bench: " + why);
        System.exit(1);
        return new IllegalStateException(why);
    }

    public static void main(String[] argv) throws Exception {
        String url = null;
        String index = "bench-bulk";
        int docs = 100000;
        int size = 200;
        int workers = 2;
        int batch = 1000;
        long bulkSize = 5L << 20;
        boolean handshake = false;
        boolean fakeProduct = false;
        for (int k = 0; k < argv.length; k++) {
            String a = argv[k];
            switch (a) {
                case "--checksum":
                    checksum();
                    return;
                case "--handshake":
                    handshake = true;
                    continue;
                case "--fake-product-header":
                    fakeProduct = true;
                    continue;
                default:
                    break;
            }
            if (k + 1 >= argv.length) {
                throw fail(a + " needs a value");
            }
            String v = argv[++k];
            switch (a) {
                case "--url" -> url = v;
                case "--docs" -> docs = Integer.parseInt(v);
                case "--doc-size" -> size = docSize(v);
                case "--workers" -> workers = Integer.parseInt(v);
                case "--batch" -> batch = Integer.parseInt(v);
                case "--bulk-size" -> bulkSize = Long.parseLong(v);
                case "--index" -> index = v;
                default -> throw fail("unknown argument " + a);
            }
        }
        if (url == null) {
            throw fail("--url is required");
        }

        BufferedReader stdin =
                new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        boolean addProductHeader = fakeProduct;
        // The null server does not say it is Elasticsearch; the client checks that it is.
        Rest5Client rest = Rest5Client.builder(URI.create(url))
                .setHttpClientConfigCallback(b -> {
                    if (addProductHeader) {
                        b.addResponseInterceptorLast((response, entity, context) -> {
                            if (!response.containsHeader("X-Elastic-Product")) {
                                response.addHeader("X-Elastic-Product", "Elasticsearch");
                            }
                        });
                    }
                })
                .build();
        Rest5ClientTransport transport = new Rest5ClientTransport(rest, new Jackson3JsonpMapper());
        ElasticsearchClient client = new ElasticsearchClient(transport);

        if (handshake) {
            System.out.println("BULK-BENCH-READY");
            System.out.flush();
            if (stdin.readLine() == null) {
                throw fail("no go line on stdin");
            }
        }
        long started = System.nanoTime();

        AtomicLong ok = new AtomicLong();
        AtomicLong failedCalls = new AtomicLong();
        AtomicReference<String> firstError = new AtomicReference<>("");
        BulkListener<Void> listener = new BulkListener<>() {
            @Override
            public void beforeBulk(long id, BulkRequest request, List<Void> contexts) {}

            @Override
            public void afterBulk(
                    long id, BulkRequest request, List<Void> contexts, BulkResponse response) {
                for (BulkResponseItem item : response.items()) {
                    if (item.error() == null) {
                        ok.incrementAndGet();
                    } else {
                        firstError.compareAndSet(
                                "", item.error().type() + ": " + item.error().reason());
                    }
                }
            }

            @Override
            public void afterBulk(
                    long id, BulkRequest request, List<Void> contexts, Throwable failure) {
                failedCalls.incrementAndGet();
                firstError.compareAndSet("", String.valueOf(failure));
            }
        };
        String target = index;
        int maxOperations = batch;
        long maxSize = bulkSize;
        int maxConcurrent = workers;
        try (BulkIngester<Void> ingester = BulkIngester.of(b -> b
                .client(client)
                .maxOperations(maxOperations)
                .maxSize(maxSize)
                .maxConcurrentRequests(maxConcurrent)
                .listener(listener))) {
            for (int i = 0; i < docs; i++) {
                String id = Integer.toString(i);
                BinaryData body = BinaryData.of(doc(i, size), "application/json");
                ingester.add(op -> op.index(x -> x.index(target).id(id).document(body)));
            }
        }
        double elapsed = (System.nanoTime() - started) / 1e9;
        System.out.println("BULK-BENCH-RESULT {\"docs\":" + docs + ",\"ok\":" + ok.get()
                + ",\"failed\":" + (docs - ok.get()) + ",\"failed_calls\":" + failedCalls.get()
                + ",\"elapsed\":" + elapsed + ",\"error\":" + jsonString(firstError.get()) + "}");
        System.out.flush();
        if (handshake) {
            while (stdin.readLine() != null) {
                // Wait for stdin to close: xtask reads our CPU time and peak RSS now.
            }
        }
        transport.close();
        System.exit(0);
    }

    static void checksum() {
        StringBuilder out = new StringBuilder("CHECKSUM");
        for (String name : new String[] {"small", "large"}) {
            int size = docSize(name);
            CRC32 crc = new CRC32();
            for (int i = 0; i < 10000; i++) {
                crc.update(doc(i, size));
                crc.update('\n');
            }
            out.append(String.format(" %s=%08x", name, crc.getValue()));
        }
        System.out.println(out);
    }

    static String jsonString(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }
}
