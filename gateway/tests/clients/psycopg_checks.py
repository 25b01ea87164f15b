#!/usr/bin/env python3
"""psycopg 3 exercised against HOST:PORT (run as an agent it goes through Tollgate with the
same host and port). Usage: psycopg_checks.py HOST PORT [CHECK...]

Prints "ok CHECK" per passed check; exits non-zero naming the first check that failed. Every
check is bounded: a watchdog ends the process if one hangs.
"""

import os
import sys
import threading
import time

import psycopg
from psycopg import errors

CHECK_TIMEOUT = 30.0
APPLICATION_NAME = "tollgate-psycopg"


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def connect(host, port, **kwargs):
    return psycopg.connect(
        host=host,
        port=port,
        user="postgres",
        dbname="postgres",
        application_name=APPLICATION_NAME,
        connect_timeout=5,
        **kwargs,
    )


def check_pipeline(host, port):
    """Several statements in one pipeline, executemany, and an error inside a pipeline."""
    with connect(host, port, autocommit=True) as conn:
        expect(psycopg.Pipeline.is_supported(), "libpq has no pipeline mode")
        with conn.pipeline():
            conn.execute("CREATE TEMP TABLE pp_items (id int PRIMARY KEY, label text)")
            for i in range(20):
                conn.execute("INSERT INTO pp_items VALUES (%s, %s)", (i, f"item {i}"))
            cur = conn.cursor()
            cur.executemany(
                "INSERT INTO pp_items VALUES (%s, %s)",
                [(i, f"many {i}") for i in range(20, 120)],
            )
            counted = conn.execute("SELECT count(*), sum(id) FROM pp_items")
            labels = conn.execute("SELECT label FROM pp_items WHERE id = %s", (7,))
        expect(counted.fetchone() == (120, sum(range(120))), "pipelined inserts")
        expect(labels.fetchone() == ("item 7",), "pipelined select")

        # An error fails the rest of the pipeline up to its sync (one implicit transaction,
        # rolled back as a whole); the session goes on.
        try:
            with conn.pipeline():
                conn.execute("INSERT INTO pp_items VALUES (1000, 'kept?')")
                conn.execute("INSERT INTO pp_items VALUES (1, 'duplicate')")
                conn.execute("INSERT INTO pp_items VALUES (1001, 'skipped')")
            raise CheckFailed("a duplicate key in a pipeline raised nothing")
        except errors.UniqueViolation:
            pass
        row = conn.execute("SELECT count(*) FROM pp_items WHERE id >= 1000").fetchone()
        expect(row == (0,), f"rows of the failed pipeline survived: {row}")


def check_prepared(host, port):
    """Server-side prepared statements (prepare=True) with binary results."""
    with connect(host, port, autocommit=True) as conn:
        cur = conn.cursor(binary=True)
        for i in range(30):
            cur.execute("SELECT %s::int * 2, %s::text", (i, f"v{i}"), prepare=True)
            expect(cur.fetchone() == (i * 2, f"v{i}"), f"prepared execution {i}")
        prepared = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
        expect(prepared >= 1, "no server-side prepared statement")


def check_copy(host, port):
    """COPY FROM STDIN with write_row (text and binary), COPY TO STDOUT read back."""
    with connect(host, port) as conn:
        cur = conn.cursor()
        cur.execute("CREATE TEMP TABLE pc_copy (id int, name text, note text)")
        with cur.copy("COPY pc_copy (id, name, note) FROM STDIN") as copy:
            for i in range(500):
                copy.write_row((i, f"name {i}\twith tab", None if i % 7 == 0 else "é"))
        with cur.copy("COPY pc_copy (id, name, note) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text", "text"])
            for i in range(500, 1000):
                copy.write_row((i, f"name {i}", "binary"))
        cur.execute("SELECT count(*), count(note), sum(id) FROM pc_copy")
        expected = (1000, 1000 - len(range(0, 500, 7)), sum(range(1000)))
        expect(cur.fetchone() == expected, "rows after COPY FROM")

        rows = []
        with cur.copy("COPY (SELECT id, name, note FROM pc_copy ORDER BY id) TO STDOUT") as copy:
            copy.set_types(["int4", "text", "text"])
            rows.extend(copy.rows())
        expect(len(rows) == 1000, f"COPY TO returned {len(rows)} rows")
        expect(rows[0] == (0, "name 0\twith tab", None), f"first row {rows[0]}")
        expect(rows[1] == (1, "name 1\twith tab", "é"), f"second row {rows[1]}")
        expect(rows[999] == (999, "name 999", "binary"), f"last row {rows[999]}")

        with cur.copy("COPY (SELECT id FROM pc_copy WHERE id < 10) TO STDOUT (FORMAT BINARY)") as copy:
            copy.set_types(["int4"])
            ids = [row[0] for row in copy.rows()]
        expect(sorted(ids) == list(range(10)), f"binary COPY TO: {ids}")


def check_cursor(host, port):
    """A named (server-side) cursor read with fetchmany."""
    with connect(host, port) as conn:
        with conn.cursor(name="pc_cursor") as cur:
            cur.execute("SELECT i, repeat('x', i % 50) FROM generate_series(1, 1000) AS i")
            seen = 0
            batches = 0
            while True:
                batch = cur.fetchmany(128)
                if not batch:
                    break
                batches += 1
                for i, text in batch:
                    seen += 1
                    expect(i == seen and len(text) == i % 50, f"cursor row {seen}")
            expect(seen == 1000, f"the cursor returned {seen} rows")
            expect(batches == 8, f"{batches} batches, expected 8")
        conn.commit()


def check_listen_notify(host, port):
    """LISTEN on one connection, NOTIFY (twice) from another, received via notifies()."""
    with connect(host, port, autocommit=True) as listener, connect(
        host, port, autocommit=True
    ) as notifier:
        listener.execute("LISTEN pc_channel")
        notifier_pid = notifier.execute("SELECT pg_backend_pid()").fetchone()[0]
        notifier.execute("NOTIFY pc_channel, 'first'")
        notifier.execute("SELECT pg_notify('pc_channel', 'second é')")
        received = []
        # psycopg 3.1's notifies() has no timeout; the check watchdog bounds this loop.
        gen = listener.notifies()
        for notify in gen:
            received.append((notify.channel, notify.payload, notify.pid))
            if len(received) == 2:
                gen.close()
        expected = [
            ("pc_channel", "first", notifier_pid),
            ("pc_channel", "second é", notifier_pid),
        ]
        expect(received == expected, f"notifications {received}, expected {expected}")
        listener.execute("UNLISTEN *")


def check_cancel(host, port):
    """conn.cancel() from a thread while pg_sleep(10) runs raises QueryCanceled quickly."""
    with connect(host, port, autocommit=True) as conn:
        timer = threading.Timer(0.3, conn.cancel)
        started = time.monotonic()
        timer.start()
        try:
            conn.execute("SELECT pg_sleep(10)")
            raise CheckFailed("pg_sleep(10) was not cancelled")
        except errors.QueryCanceled:
            pass
        finally:
            timer.cancel()
        elapsed = time.monotonic() - started
        expect(elapsed < 3.0, f"the cancel took {elapsed:.2f} s")
        expect(conn.execute("SELECT 1").fetchone() == (1,), "the session after the cancel")


CHECKS = {
    "pipeline": check_pipeline,
    "prepared": check_prepared,
    "copy": check_copy,
    "cursor": check_cursor,
    "listen-notify": check_listen_notify,
    "cancel": check_cancel,
}


def watchdog(name):
    def expire():
        print(f"FAILED {name}: timed out after {CHECK_TIMEOUT:.0f} s", file=sys.stderr, flush=True)
        os._exit(3)

    timer = threading.Timer(CHECK_TIMEOUT, expire)
    timer.daemon = True
    timer.start()
    return timer


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    host, port = argv[1], int(argv[2])
    names = argv[3:] or list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        print(f"unknown checks {unknown}; known: {list(CHECKS)}", file=sys.stderr)
        return 2
    print(f"psycopg {psycopg.__version__}, libpq {psycopg.pq.version()}", flush=True)
    for name in names:
        timer = watchdog(name)
        started = time.monotonic()
        try:
            CHECKS[name](host, port)
        except Exception as error:  # noqa: BLE001 - any failure fails the check, named
            print(f"FAILED {name}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            return 1
        finally:
            timer.cancel()
        print(f"ok {name} ({(time.monotonic() - started) * 1000:.0f} ms)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
