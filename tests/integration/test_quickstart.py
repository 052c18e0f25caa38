"""The README's first command on a fresh checkout: contrib/quickstart.sh
builds xmppd in a new clone, writes a configuration with the default
modules, creates the demo accounts and runs the server. A newcomer's client
then gets what RFC 6121 promises: a roster (§2.2), the other demo user's
presence (§4.2, the mutual subscription quickstart.sh set up) and a message
stored while the recipient was offline (XEP-0160).

The clone is of the repository as committed (HEAD): what a newcomer gets.
The build is the clone's own, without sanitizers, on SQLite: the test runs
once, in the default pass of contrib/run-tests.sh."""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

import xmpptest
from conftest import REPO, STORAGE
from xmpptest import Client, free_port, run, scaled

pytestmark = [
    pytest.mark.skipif(bool(os.environ.get("ASAN_OPTIONS")),
                       reason="quickstart.sh builds its own server without sanitizers: "
                              "run once, in the default pass"),
    pytest.mark.skipif(STORAGE != "sqlite",
                       reason="quickstart.sh always uses SQLite: run once, in the default pass"),
]

NS_DELAY = "urn:xmpp:delay"


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    clone = tmp_path_factory.mktemp("qs") / "xmppd"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    port, tls_port, https_port = free_port(), free_port(), free_port()
    env = dict(os.environ, XMPPD_C2S_PORT=str(port), XMPPD_C2S_TLS_PORT=str(tls_port),
               XMPPD_HTTPS_PORT=str(https_port), JOBS="2")
    out_path = clone.parent / "quickstart.out"
    out = open(out_path, "wb")
    proc = subprocess.Popen(["bash", "contrib/quickstart.sh"], cwd=str(clone), env=env,
                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    # A full build on two shared cores takes a minute or two.
    deadline = time.monotonic() + scaled(900)
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail("quickstart.sh exited %s:\n%s"
                            % (proc.returncode, out_path.read_text(errors="replace")[-6000:]))
            if "Starting xmppd" in out_path.read_text(errors="replace"):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                pytest.fail("quickstart.sh did not start a server:\n%s"
                            % out_path.read_text(errors="replace")[-6000:])
            time.sleep(0.5)
        text = out_path.read_text(errors="replace")
        passwords = dict(re.findall(r"^\s+(\w+)@localhost\s+password: (\S+)$", text, re.M))
        yield {"clone": clone, "port": port, "tls_port": tls_port, "https_port": https_port,
               "passwords": passwords,
               "output": text, "proc": proc}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the script exec'd xmppd
            try:
                rc = proc.wait(scaled(20))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                rc = "killed"
        else:
            rc = proc.returncode
        out.close()
        assert rc == 0, "xmppd of quickstart.sh exited %s on SIGTERM:\n%s" % (
            rc, out_path.read_text(errors="replace")[-4000:])


def test_quickstart_prints_demo_accounts_and_paths(quickstart):
    """Both demo accounts were created, their passwords printed once, and
    the state is where the output says: the database in run/data."""
    assert set(quickstart["passwords"]) == {"alice", "bob"}, quickstart["output"][-3000:]
    data = quickstart["clone"] / "run" / "data"
    assert "data:    %s" % data in quickstart["output"]
    assert (data / "xmppd.sqlite").exists()
    assert not (quickstart["clone"] / "run" / "xmppd.sqlite").exists()


def test_quickstart_serves_websocket_bosh_and_upload_over_https(quickstart):
    """The quick start's HTTPS listener: XEP-0156 host-meta names the
    WebSocket (RFC 7395) and BOSH (XEP-0206) endpoints a browser client
    uses, on the port the output prints."""
    import json
    import ssl
    import urllib.request
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    url = "https://127.0.0.1:%d/.well-known/host-meta.json" % quickstart["https_port"]
    with urllib.request.urlopen(url, context=ctx, timeout=scaled(10)) as r:
        links = {l["rel"]: l["href"] for l in json.load(r)["links"]}
    assert links["urn:xmpp:alt-connections:websocket"].endswith("/xmpp-websocket"), links
    assert links["urn:xmpp:alt-connections:xbosh"].endswith("/http-bind"), links
    assert "%d (HTTPS" % quickstart["https_port"] in quickstart["output"]


def test_quickstart_config_loads_the_default_modules(quickstart):
    """The configuration holds every module of the example's default block
    (the one list), and xmppctl check passes it."""
    clone = quickstart["clone"]
    example = (clone / "contrib" / "xmppd.example.json").read_text()
    block = example.split("// BEGIN DEFAULT MODULES", 1)[1].split("// END DEFAULT MODULES", 1)[0]
    names = re.findall(r'^    "(\w+)":', block, re.M)  # a module per line; options may continue
    assert {"roster", "presence", "offline", "disco", "limits", "mam", "smacks", "carbons", "csi",
            "push", "pep", "muc", "upload"} <= set(names)
    conf = (clone / "run" / "xmppd.json").read_text()
    for n in names:
        assert '"%s":' % n in conf, n
    ctl = subprocess.run([str(clone / "build" / "server" / "xmppctl"), "-c",
                          str(clone / "run" / "xmppd.json"), "module", "list"],
                         capture_output=True, text=True, timeout=scaled(30))
    assert ctl.returncode == 0, ctl.stderr
    for n in names:
        assert re.search(r"^%s\s" % n, ctl.stdout, re.M), (n, ctl.stdout)


def test_newcomer_gets_roster_presence_and_offline_message(quickstart):
    """RFC 6121 §2.2 roster get, §4.2/§4.4 presence of a subscribed contact,
    XEP-0160 offline storage with a XEP-0203 delay stamp: alice logs in with
    the printed password, finds bob in her roster (subscription both),
    writes to him while he is offline; bob logs in and gets alice's
    presence and the message; alice sees bob come online."""
    pw = quickstart["passwords"]
    port = quickstart["port"]

    async def scenario():
        alice = Client("alice@localhost/desk", pw["alice"], port)
        xmpptest._live.append(alice)
        await alice.start()
        roster = await alice.get_roster(timeout=scaled(5))
        items = {str(k): v for k, v in roster["roster"]["items"].items()}
        bob_item = items.get("bob@localhost")
        assert bob_item is not None, items
        assert bob_item["subscription"] == "both"
        assert bob_item["name"] == "Bob" and "Demo" in bob_item["groups"]
        alice.send_presence()
        alice.send_message(mto="bob@localhost", mbody="welcome, bob", mtype="chat")
        await alice.next_presence(pred=lambda p: p["from"].bare == "alice@localhost")

        bob = Client("bob@localhost/phone", pw["bob"], port)
        xmpptest._live.append(bob)
        await bob.start()
        bob.send_presence()
        msg = await bob.next_message(pred=lambda m: m["body"] == "welcome, bob")
        assert msg["from"].bare == "alice@localhost"
        assert msg.xml.find("{%s}delay" % NS_DELAY) is not None
        pres = await bob.next_presence(pred=lambda p: p["from"].bare == "alice@localhost")
        assert pres["type"] in ("available", "")
        await alice.next_presence(pred=lambda p: p["from"].bare == "bob@localhost"
                                  and p["type"] != "unavailable")

    run(scenario())
