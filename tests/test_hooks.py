"""on-failure / on-success hooks get the event in their environment; the
shipped example posts it to a webhook served here on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from tests.daemon import ROOT, wait_for


def test_on_failure_posts_the_event_to_a_webhook(daemon):
    posts: list[dict[str, str]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass
    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        d = daemon({
            "bad.toml": '[unit]\non-failure = ["alert"]\n'
                        '[service]\nexec = "sh -c \'exit 3\'"\nrestart = "never"\n',
            "alert.toml": f'[unit]\nenabled = false\n[service]\ntype = "oneshot"\n'
                          f'exec = "{ROOT}/units/examples/vigil-alert"\nrestart = "never"\n'
                          f'env = {{ ALERT_URL = "http://127.0.0.1:{server.server_port}/x" }}\n',
        })
        wait_for(lambda: posts, what="the webhook to be called")
        event = posts[0]
        assert (event["unit"], event["result"], event["exit_code"], event["signal"]) == \
            ("bad", "failed", "3", "")
        assert event["reason"] == "exit 3"
        wait_for(lambda: d.status("alert")["state"] == "exited")
    finally:
        server.shutdown()


def test_on_success_hook_runs_each_time_with_the_event(daemon, tmp_path):
    out = tmp_path / "events"
    d = daemon({
        "job.toml": '[unit]\non-success = ["record"]\n[service]\ntype = "oneshot"\nexec = "true"\n',
        "record.toml": '[unit]\nenabled = false\n[service]\ntype = "oneshot"\n'
                       'exec = ["sh", "-c", "echo $VIGIL_HOOK_UNIT $VIGIL_HOOK_RESULT '
                       f'$VIGIL_HOOK_EXIT_CODE >> {out}"]\n',
    })
    wait_for(lambda: out.exists() and out.read_text() == "job success 0\n")
    d.call("restart", units=["job"])
    wait_for(lambda: out.read_text() == "job success 0\njob success 0\n",
             what="the hook to run a second time")


BAD = '[unit]\non-failure = ["alert"]\n[service]\nexec = ["sh", "-c", "{script}"]\nrestart = "never"\n'
ALERT = ('[unit]\nenabled = false\n[service]\ntype = "oneshot"\nrestart = "never"\n'
         'exec = ["sh", "-c", "echo start $VIGIL_HOOK_UNIT >> {out}; sleep 0.5; '
         'echo done $VIGIL_HOOK_UNIT $VIGIL_HOOK_EXIT_CODE >> {out}"]\n')


def _alerts(out) -> list[str]:
    return sorted(line for line in out.read_text().splitlines() if line.startswith("done"))


def test_three_units_failing_together_send_three_alerts(daemon, tmp_path):
    """One hook run per failure: neither merged into one nor cut short by the next."""
    out = tmp_path / "alerts"
    units = {f"bad{i}.toml": BAD.format(script=f"exit {i + 3}") for i in range(3)}
    d = daemon({**units, "alert.toml": ALERT.format(out=out)})
    wait_for(lambda: len(_alerts(out)) == 3, what="three alerts")
    assert _alerts(out) == ["done bad0 3", "done bad1 4", "done bad2 5"]
    wait_for(lambda: d.status("alert")["state"] == "exited")
    assert len(out.read_text().splitlines()) == 6, "each alert ran once, to its end"


def test_a_failure_while_the_hook_runs_waits_for_its_own_run(daemon, tmp_path):
    out = tmp_path / "alerts"
    late = f"until grep -q start {out} 2>/dev/null; do sleep 0.05; done; exit 9"
    d = daemon({"bad0.toml": BAD.format(script="exit 3"), "bad1.toml": BAD.format(script=late),
                "alert.toml": ALERT.format(out=out)})
    wait_for(lambda: len(_alerts(out)) == 2, what="two alerts")
    assert _alerts(out) == ["done bad0 3", "done bad1 9"]
    assert out.read_text().splitlines()[:2] == ["start bad0", "done bad0 3"], \
        "the first alert finished before the second began"
    wait_for(lambda: d.status("alert")["state"] == "exited")
