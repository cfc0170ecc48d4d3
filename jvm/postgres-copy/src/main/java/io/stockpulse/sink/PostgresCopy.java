package io.stockpulse.sink;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Savepoint;
import java.sql.Statement;
import java.util.ArrayDeque;
import java.util.Collections;
import java.util.Deque;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.spark.api.java.function.MapPartitionsFunction;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.postgresql.Driver;
import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

import scala.Tuple2;

/**
 * Writes a micro-batch into PostgreSQL from the executors, each task COPYing its own partition.
 *
 * <p>Why on the JVM: the Python writer collects every batch to the driver as Arrow, encodes it
 * as CSV and COPYs it, while the JVM that computed it waits; that serial cycle set the job's rate
 * (docs/performance.md). Here each task streams the rows it computed straight into COPY, so
 * computing and writing overlap across tasks and nothing crosses into Python.
 *
 * <p>The rows arrive already encoded: column 0 says whether the row is a dead letter, column 1
 * is its CSV line for that table (built in Spark SQL by stockpulse/stream/sinks/jvm_copy.py, the
 * one place that knows the schema). A task writes both tables in one transaction, so its
 * partition lands whole or not at all. Exactly-once comes from the key, as in the Python writer:
 * a task run twice, or a batch replayed after a crash, finds its keys taken and changes nothing.
 *
 * <p>A lost or refused connection, and the states psycopg also counts as operational (the server
 * shutting down, too many connections, a deadlock or serialisation failure), are reported as
 * {@link Unavailable}, which the Python side retries with backoff; any other error fails the batch
 * as it is.
 */
public final class PostgresCopy {
    private static final String UNIQUE_VIOLATION = "23505";
    /** SQLSTATEs worth a retry besides class 08 (connection exceptions): the same ones psycopg
     * raises as OperationalError, which the Python writer retries. */
    private static final Set<String> RETRYABLE = Set.of("57P01", "57P02", "57P03", "53300", "40001", "40P01");
    private static final Map<String, Deque<Connection>> IDLE = new ConcurrentHashMap<>();

    private PostgresCopy() {
    }

    /**
     * Writes {@code lines} (dead-letter flag, CSV line) and returns {ticks, dead letters} newly
     * stored. {@code ticks} and {@code dead} are {@code table ("col", ...)}; {@code key} is the
     * unique key's column list both tables share.
     */
    public static long[] write(Dataset<Row> lines, String url, String user, String password,
                               String ticks, String dead, String key) {
        Writer writer = new Writer(url, user, password, ticks, dead, key);
        List<Tuple2<Long, Long>> counts = lines
                .mapPartitions(writer, Encoders.tuple(Encoders.LONG(), Encoders.LONG()))
                .collectAsList();
        long[] total = new long[2];
        for (Tuple2<Long, Long> count : counts) {
            total[0] += count._1();
            total[1] += count._2();
        }
        return total;
    }

    /** The task side; serialised to the executors with the connection settings. */
    static final class Writer implements MapPartitionsFunction<Row, Tuple2<Long, Long>> {
        private static final long serialVersionUID = 1L;
        private final String url;
        private final String user;
        private final String password;
        private final String ticks;
        private final String dead;
        private final String key;

        Writer(String url, String user, String password, String ticks, String dead, String key) {
            this.url = url;
            this.user = user;
            this.password = password;
            this.ticks = ticks;
            this.dead = dead;
            this.key = key;
        }

        @Override
        public Iterator<Tuple2<Long, Long>> call(Iterator<Row> rows) throws Exception {
            ByteArrayOutputStream good = new ByteArrayOutputStream(1 << 20);
            ByteArrayOutputStream bad = new ByteArrayOutputStream();
            while (rows.hasNext()) {
                Row row = rows.next();
                ByteArrayOutputStream target = row.getBoolean(0) ? bad : good;
                target.write(row.getString(1).getBytes(StandardCharsets.UTF_8));
                target.write('\n');
            }
            if (good.size() == 0 && bad.size() == 0) {
                return Collections.singletonList(new Tuple2<>(0L, 0L)).iterator();
            }
            Connection connection = borrow();
            boolean healthy = false;
            try {
                long stored = copyIdempotent(connection, ticks, good.toByteArray());
                long deadStored = copyIdempotent(connection, dead, bad.toByteArray());
                connection.commit();
                healthy = true;
                return Collections.singletonList(new Tuple2<>(stored, deadStored)).iterator();
            } catch (SQLException e) {
                throw classified(e);
            } finally {
                giveBack(connection, healthy);
            }
        }

        /**
         * COPYs {@code data} into {@code target} and returns how many rows were new. A batch never
         * seen goes straight in; one repeating a key (a replay) fails on the unique key, is rolled
         * back to the savepoint and goes through a staging table with ON CONFLICT DO NOTHING.
         */
        private long copyIdempotent(Connection connection, String target, byte[] data) throws Exception {
            if (data.length == 0) {
                return 0;
            }
            CopyManager copy = connection.unwrap(PGConnection.class).getCopyAPI();
            Savepoint savepoint = connection.setSavepoint();
            try {
                long stored = copy.copyIn("COPY " + target + " FROM STDIN WITH (FORMAT csv)",
                        new ByteArrayInputStream(data));
                connection.releaseSavepoint(savepoint);
                return stored;
            } catch (SQLException e) {
                if (!UNIQUE_VIOLATION.equals(e.getSQLState())) {
                    throw e;
                }
                connection.rollback(savepoint);
            }
            int open = target.indexOf('(');
            String table = target.substring(0, open).trim();
            String columns = target.substring(open);
            String staging = table + "_staging";
            try (Statement statement = connection.createStatement()) {
                statement.execute("CREATE TEMP TABLE IF NOT EXISTS " + staging + " (LIKE " + table
                        + " INCLUDING DEFAULTS) ON COMMIT DELETE ROWS");
                copy.copyIn("COPY " + staging + " " + columns + " FROM STDIN WITH (FORMAT csv)",
                        new ByteArrayInputStream(data));
                String list = columns.substring(1, columns.length() - 1);
                return statement.executeUpdate("INSERT INTO " + table + " " + columns + " SELECT " + list
                        + " FROM " + staging + " ON CONFLICT (" + key + ") DO NOTHING");
            }
        }

        private String poolKey() {
            return url + "\u0000" + user;
        }

        /** An idle connection of this executor, or a new one: a task per partition per batch
         * would otherwise pay a connection and its authentication every time. */
        private Connection borrow() throws Exception {
            Deque<Connection> idle = IDLE.computeIfAbsent(poolKey(), k -> new ArrayDeque<>());
            while (true) {
                Connection connection;
                synchronized (idle) {
                    connection = idle.poll();
                }
                if (connection == null) {
                    break;
                }
                if (connection.isValid(5)) {  // a server restarted since: not a failed batch
                    return connection;
                }
                connection.close();
            }
            Properties properties = new Properties();
            properties.setProperty("user", user);
            if (password != null) {
                properties.setProperty("password", password);
            }
            properties.setProperty("ApplicationName", "stockpulse-consumer");
            try {
                // The driver itself, not DriverManager: that finds drivers through the class loader
                // of whoever used it first in this JVM, which need not see the job's --jars.
                Connection connection = new Driver().connect(url, properties);
                if (connection == null) {
                    throw new IllegalArgumentException("not a PostgreSQL JDBC URL: " + url);
                }
                connection.setAutoCommit(false);
                return connection;
            } catch (SQLException e) {
                throw classified(e);
            }
        }

        private void giveBack(Connection connection, boolean healthy) {
            try {
                if (!healthy) {
                    connection.close();
                    return;
                }
            } catch (SQLException ignored) {
                return;
            }
            Deque<Connection> idle = IDLE.computeIfAbsent(poolKey(), k -> new ArrayDeque<>());
            synchronized (idle) {
                idle.push(connection);
            }
        }
    }

    /** A failure worth a retry as {@link Unavailable}; others unchanged. */
    static Exception classified(SQLException e) {
        String state = e.getSQLState();
        if (state != null && (state.startsWith("08") || RETRYABLE.contains(state))) {
            return new Unavailable("PostgreSQL unavailable [" + state + "]: " + e.getMessage(), e);
        }
        return e;
    }

    /** A failure a retry may cure; stockpulse/stream/sinks/jvm_copy.py recognises it by its name. */
    public static final class Unavailable extends RuntimeException {
        private static final long serialVersionUID = 1L;

        Unavailable(String message, Throwable cause) {
            super(message, cause);
        }
    }
}
