package journey.metrics;

import io.prometheus.client.CollectorRegistry;
import io.prometheus.client.exporter.HTTPServer;

import java.io.IOException;
import java.lang.reflect.Field;
import java.net.InetSocketAddress;
import java.util.Iterator;

import org.apache.flink.metrics.prometheus.AbstractPrometheusReporter;
import org.apache.flink.util.PortRange;

/**
 * {@link AbstractPrometheusReporter} (metric naming, labels, histograms: all Flink's) served by
 * an HTTP endpoint on {@code host} and the first free port of {@code ports}.
 */
public class LoopbackPrometheusReporter extends AbstractPrometheusReporter {
    private final HTTPServer httpServer;
    private final int port;

    LoopbackPrometheusReporter(String host, PortRange ports) {
        CollectorRegistry registry = registryOf(this);
        HTTPServer server = null;
        int bound = -1;
        Iterator<Integer> it = ports.getPortsIterator();
        while (server == null && it.hasNext()) {
            int candidate = it.next();
            try {
                server = new HTTPServer(new InetSocketAddress(host, candidate), registry, true);
                bound = candidate;
            } catch (IOException e) {
                log.debug("Prometheus endpoint: {}:{} is taken", host, candidate, e);
            }
        }
        if (server == null) {
            throw new RuntimeException("Prometheus endpoint: no free port in " + ports + " on " + host);
        }
        httpServer = server;
        port = bound;
        log.info("Started Prometheus endpoint on {}:{}.", host, port);
    }

    /** The registry the abstract reporter fills (a package-private field of Flink's class). */
    private static CollectorRegistry registryOf(AbstractPrometheusReporter reporter) {
        try {
            Field f = AbstractPrometheusReporter.class.getDeclaredField("registry");
            f.setAccessible(true);
            return (CollectorRegistry) f.get(reporter);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException(
                    "this flink-metrics-prometheus release has no registry field; pin the version in local/maven/prometheus", e);
        }
    }

    int getPort() {
        return port;
    }

    @Override
    public void close() {
        httpServer.stop();
        super.close();
    }
}
