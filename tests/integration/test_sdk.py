"""The module SDK: an out-of-tree module, live module reload, ABI checks.

* contrib/mod_hello is built outside the tree with nothing but the SDK
  files `make install` puts in a prefix (the headers and xmppd.pc: targets
  install-xmppdincludeHEADERS and install-pkgconfigDATA, staged with
  DESTDIR and found through PKG_CONFIG_PATH / PKG_CONFIG_SYSROOT_DIR), then
  loaded by a running server and asked its IQ.
* `xmppctl module reload NAME` replaces a module by a new instance while
  clients stay connected (roster and presence keep working, RFC 6121 §2-4),
  picks up a new build of the module file, and a reload whose new instance
  fails (a bad option in the edited file) keeps the running one.
* A module built for another module ABI is refused, naming the file and
  both ABI versions (api/xmppd/module.h XMPPD_ABI).
"""

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import BUILD, MODULES, REPO, XMPPCTL, XMPPD
from xmpptest import QUIET_PERIOD, RawClient, XMPPTestError, connect, run, scaled

HELLO_NS = "urn:xmppd:hello:0"
NS_ROSTER = "jabber:iq:roster"
GREETING = "Hi from the SDK test"


# ---- building against the installed SDK ---------------------------------------------------

@pytest.fixture(scope="module")
def sdk(tmp_path_factory):
    """The SDK installed by `make install` into a staging folder; returns
    the environment that makes `pkg-config --cflags xmppd` find it."""
    stage = tmp_path_factory.mktemp("sdk-stage")
    r = subprocess.run(["make", "-s", "-C", str(BUILD), "install-xmppdincludeHEADERS",
                        "install-pkgconfigDATA", "DESTDIR=%s" % stage],
                       capture_output=True, text=True, timeout=scaled(120))
    assert r.returncode == 0, r.stdout + r.stderr
    pcs = list(stage.rglob("xmppd.pc"))
    assert len(pcs) == 1, pcs
    env = dict(os.environ, PKG_CONFIG_PATH=str(pcs[0].parent), PKG_CONFIG_SYSROOT_DIR=str(stage))
    cflags = subprocess.run(["pkg-config", "--cflags", "xmppd"], env=env, capture_output=True,
                            text=True, check=True).stdout
    assert str(stage) in cflags, cflags
    return env


def build_hello(sdk, outdir, version=None):
    """Builds contrib/mod_hello (a copy, so the source tree stays clean) and
    installs mod_hello.so into outdir as a new file (a new inode, as
    `install` does). Returns its path."""
    src = outdir.parent / ("hello-src-%s" % (version or "1.0"))
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(REPO / "contrib" / "mod_hello", src)
    cflags = "-O2 -g -Werror"
    if version:
        cflags += ' -DHELLO_VERSION=\\"%s\\"' % version
    r = subprocess.run(["make", "-s", "-C", str(src), "CFLAGS=" + cflags], env=sdk,
                       capture_output=True, text=True, timeout=scaled(120))
    assert r.returncode == 0, r.stdout + r.stderr
    outdir.mkdir(exist_ok=True)
    dest = outdir / "mod_hello.so"
    tmp = outdir / ".mod_hello.so.new"
    shutil.copy(src / "mod_hello.so", tmp)
    os.replace(tmp, dest)
    return dest


OLD_ABI_C = r"""
#include <xmppd/xmppd.h>
static int load(xmppd_module *m, const void *conf) { return 0; }
/* As if built against headers of module ABI 1.2, whose descriptor had
 * the same layout: the major version alone tells them apart. */
XMPPD_EXPORT const xmppd_module_def xmppd__module_oldabi = {
    .abi = (1u << 16) | 2u,
    .def_size = sizeof(xmppd_module_def),
    .name = "oldabi",
    .version = "1.0",
    .load = load,
};
"""


def build_oldabi(sdk, outdir):
    src = outdir.parent / "oldabi.c"
    src.write_text(OLD_ABI_C)
    outdir.mkdir(exist_ok=True)
    cflags = subprocess.run(["pkg-config", "--cflags", "xmppd"], env=sdk, capture_output=True,
                            text=True, check=True).stdout.split()
    out = outdir / "mod_oldabi.so"
    subprocess.run(["cc"] + cflags + ["-Wall", "-Wno-unused-parameter", "-fPIC",
                                      "-fvisibility=hidden", "-shared", "-o", str(out), str(src)],
                   check=True, timeout=scaled(60))
    return out


@pytest.fixture(scope="module")
def hello_dir(tmp_path_factory, sdk):
    d = tmp_path_factory.mktemp("hello") / "modules"
    build_hello(sdk, d)
    return d


@pytest.fixture(scope="module")
def config_overrides(hello_dir):
    return {
        "module_path": [str(hello_dir), str(MODULES)],
        "modules": {"roster": True, "presence": True, "disco": True,
                    "hello": {"greeting": GREETING, "ask_timeout": "1s"}},
    }


# ---- helpers ---------------------------------------------------------------------------------

def hello_iq(c):
    iq = c.Iq()
    iq["type"] = "get"
    iq["to"] = "localhost"
    iq.append(ET.fromstring("<hello xmlns='%s'/>" % HELLO_NS))
    return iq


async def ask_hello(c):
    res = await hello_iq(c).send(timeout=scaled(5))
    h = res.xml.find("{%s}hello" % HELLO_NS)
    assert h is not None, res
    return {child.tag.split("}")[-1]: child.text for child in h}


async def login(server, account, resource=None, presence=None):
    c = await connect(server, account, resource=resource, presence=presence)
    c.auto_authorize = None
    c.auto_subscribe = False
    c.pushes = asyncio.Queue()
    c.dropped = []
    c.add_event_handler("roster_update",
                        lambda iq: iq["type"] == "set" and c.pushes.put_nowait(iq))
    c.add_event_handler("disconnected", lambda e: c.dropped.append(e))
    return c


def roster_iq(c, type_, body=""):
    iq = c.Iq()
    iq["type"] = type_
    iq.append(ET.fromstring("<query xmlns='%s'>%s</query>" % (NS_ROSTER, body)))
    return iq


async def roster_items(c):
    res = await roster_iq(c, "get").send(timeout=scaled(5))
    q = res.xml.find("{%s}query" % NS_ROSTER)
    return {it.get("jid"): (it.get("name"), it.get("subscription"), it.get("ask"))
            for it in q.findall("{%s}item" % NS_ROSTER)}


async def next_push(c):
    try:
        iq = await asyncio.wait_for(c.pushes.get(), scaled(5))
    except asyncio.TimeoutError:
        raise XMPPTestError("timeout: %s received no roster push" % c.boundjid)
    it = iq.xml.find("{%s}query/{%s}item" % (NS_ROSTER, NS_ROSTER))
    return it.get("jid"), it.get("name"), it.get("subscription"), it.get("ask")


def of_type(t, frm=None):
    return lambda p: p["type"] == t and (frm is None or p["from"].bare == frm)


def one_line(r):
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    return lines[0]


# ---- the out-of-tree module ---------------------------------------------------------------------

def test_hello_built_out_of_tree_answers_and_greets(server, accounts):
    """mod_hello, built with only the installed SDK, is loaded from
    module_path: an account's first login gets the greeting from the host,
    later logins do not; its IQ is answered with the greeting, the module's
    version and the first login (XEP-0082 date-time)."""
    (a,) = accounts(1)

    async def scenario():
        c = await login(server, a, resource="one")
        msg = await c.next_message(pred=lambda m: m["body"] == GREETING)
        assert str(msg["from"]) == "localhost"
        info = await ask_hello(c)
        assert info["greeting"] == GREETING and info["version"] == "1.0"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["first-login"])
        await c.stop()
        c2 = await login(server, a, resource="two")
        assert await c2.no_message() == []
        assert (await ask_hello(c2))["first-login"] == info["first-login"]
    run(scenario())
    mods = server.ctl("module", "list").stdout
    assert re.search(r"^hello\s+localhost\s+1\.0\s+\S*mod_hello\.so$", mods, re.M), mods


def test_hello_asks_the_client_with_iq_request(server, accounts):
    """xmppd_iq_request (router.h): <hello/> asks the client its software
    version (XEP-0092) and waits for the answer: a result is used, an
    error is told as such, and a client that stays silent is answered after
    the module's ask_timeout (1 s here), with "no answer". Only the entity
    asked can answer: another account replying with the same id is not
    taken (the rule mod_caps relies on so a guessed id cannot poison its
    cache)."""
    a, other = accounts(2)

    async def scenario():
        c = await login(server, a, resource="answers")
        c.register_plugin("xep_0092")
        c["xep_0092"].software_name = "HelloTestClient"
        c["xep_0092"].version = "4.2"
        assert (await ask_hello(c))["client"] == "HelloTestClient 4.2"
        c.plugin.disable("xep_0092")
        assert (await ask_hello(c))["client"] == "unknown (the client would not say)"
    run(scenario())

    raw = RawClient(server.port, domain="localhost")
    raw.login(a.user, a.password, resource="silent")
    t0 = time.monotonic()
    raw.send("<iq type='get' to='localhost' id='h1'><hello xmlns='%s'/></iq>" % HELLO_NS)
    asked = raw.expect("{jabber:client}iq")  # the server's question, never answered
    assert asked.get("type") == "get" and asked.find("{jabber:iq:version}query") is not None
    assert asked.get("from") == "localhost"
    forger = RawClient(server.port, domain="localhost")
    forger.login(other.user, other.password, resource="forger")
    forger.send("<iq type='result' to='localhost' id='%s'><query xmlns='jabber:iq:version'>"
                "<name>Forged</name><version>1</version></query></iq>" % asked.get("id"))
    answer = raw.expect("{jabber:client}iq", timeout=scaled(10))
    assert answer.get("id") == "h1" and answer.get("type") == "result", ET.tostring(answer)
    client = answer.find("{%s}hello/{%s}client" % (HELLO_NS, HELLO_NS))
    assert client is not None and client.text == "unknown (no answer)"
    assert time.monotonic() - t0 >= 0.9
    # The late answer is not taken for anything: it goes nowhere.
    raw.send("<iq type='result' to='localhost' id='%s'/>" % asked.get("id"))
    raw.close()
    forger.close()


def test_hello_ctl_command(server, accounts):
    """A module's own xmppctl command (api/xmppd/ctl.h): listed by
    `xmppctl --help` of the running server, answered at once without an
    argument and after a storage read with one; a wrong call is one line
    on stderr and exit status 1; a word nobody registered is a usage error."""
    (a,) = accounts(1)

    async def scenario():
        c = await login(server, a)
        await c.next_message(pred=lambda m: m["body"] == GREETING)
    run(scenario())
    r = server.ctl("--help")
    assert r.returncode == 0
    assert re.search(r"^  hello-greeted \[ACCOUNT\]\s+greetings sent since load, or when ACCOUNT "
                     r"first logged in \(localhost:hello\)$", r.stdout, re.M), r.stdout
    r = server.ctl("hello-greeted")
    assert r.returncode == 0 and re.fullmatch(r"\d+ greeted since load\n", r.stdout), r.stdout
    r = server.ctl("hello-greeted", a.user)
    assert r.returncode == 0 and re.fullmatch(r"first login: \d{4}-\d\d-\d\dT\S+Z\n", r.stdout), r.stdout
    r = server.ctl("-j", "hello-greeted", "nobody-here")
    assert r.returncode == 0 and json.loads(r.stdout)["text"] == "never greeted"
    r = server.ctl("hello-greeted", "a", "b")
    assert r.returncode == 1 and r.stderr.strip() == "xmppctl: hello-greeted: usage: hello-greeted [ACCOUNT]"
    r = server.ctl("hello-greetd")
    assert r.returncode == 2 and "unknown command" in r.stderr


def test_hello_in_catalogue(server):
    """The module's own event is declared (xmppctl hooks), its hook and IQ
    handler are listed with their module; it implements no RFC or XEP."""
    r = server.ctl("-j", "hooks")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    ev = {e["name"]: e for e in j["events"]}
    assert ev["hello/greeted"]["stop"] == "all"
    assert ev["hello/greeted"]["declared_by"] == [{"module": "hello", "host": "localhost"}]
    assert {"module": "hello", "host": "localhost", "priority": 0} in ev["resource-bound"]["handlers"]
    assert any(i["xmlns"] == HELLO_NS and i["module"] == "hello" and i["target"] == "host"
               for i in j["iq_handlers"])


def test_reload_picks_up_a_new_build(server, accounts, sdk, hello_dir):
    """A new build installed over mod_hello.so (a new file) is what
    `module reload hello` loads; a connected client stays connected and
    sees the new version."""
    (a,) = accounts(1)

    async def scenario():
        c = await login(server, a)
        assert (await ask_hello(c))["version"] == "1.0"
        build_hello(sdk, hello_dir, version="2.0")
        try:
            r = server.ctl("module", "reload", "hello")
            assert r.returncode == 0, r.stderr
            assert (await ask_hello(c))["version"] == "2.0"
            assert c.dropped == []
        finally:
            build_hello(sdk, hello_dir)
            assert server.ctl("module", "reload", "hello").returncode == 0
        assert (await ask_hello(c))["version"] == "1.0"
    run(scenario())


def test_failed_reload_keeps_the_running_module(server, accounts):
    """A reload whose new instance cannot load (a bad option in the edited
    file) fails with the file, line and key, and the old instance keeps
    answering."""
    (a,) = accounts(1)
    server.config["modules"]["hello"]["greet_delay"] = "forever"
    server.write_config()
    try:
        r = server.ctl("module", "reload", "hello", "localhost")
        assert r.returncode == 1
        line = one_line(r)
        assert "xmppd.json:" in line and "modules.hello.greet_delay" in line
        assert "running instance is kept" in line
    finally:
        server.config["modules"]["hello"].pop("greet_delay")
        server.write_config()

    async def scenario():
        c = await login(server, a)
        assert (await ask_hello(c))["greeting"] == GREETING
    run(scenario())


def test_unload_and_load(server, accounts):
    """module unload removes the module (its IQ is then service-unavailable,
    RFC 6120 §8.4) and module load brings it back."""
    (a,) = accounts(1)
    r = server.ctl("module", "unload", "hello")
    assert r.returncode == 0, r.stderr

    async def scenario(loaded):
        c = await login(server, a)
        if loaded:
            assert (await ask_hello(c))["version"] == "1.0"
        else:
            _, cond = await c.iq_error(hello_iq(c))
            assert cond == "service-unavailable"
    try:
        run(scenario(False))
        r = server.ctl("module", "unload", "hello")
        assert r.returncode == 1 and "not loaded" in one_line(r)
    finally:
        r = server.ctl("module", "load", "hello")
        assert r.returncode == 0, r.stderr
    run(scenario(True))


# ---- reloading roster and presence with clients connected ------------------------------------------

def test_reload_roster_keeps_sessions(server, accounts):
    """RFC 6121 §2-4 across `module reload roster` and `module reload
    presence`: two logged-in clients stay connected; roster get returns what
    was set before; a roster set is pushed to the interested resource (the
    new instance inherits that state); a subscription request and its
    approval go through (presence uses the new roster API); presence
    broadcast still reaches the subscriber."""
    a, b = accounts(2)

    async def scenario():
        ca = await login(server, a, presence=0)
        cb = await login(server, b, presence=0)
        await roster_items(ca)
        await roster_items(cb)
        await (roster_iq(ca, "set", "<item jid='%s' name='Bob'/>" % b.jid)).send()
        assert await next_push(ca) == (b.jid, "Bob", "none", None)

        for mod in ("roster", "presence"):
            r = server.ctl("module", "reload", mod)
            assert r.returncode == 0, r.stderr
            assert "reloaded" in r.stdout

        assert await roster_items(ca) == {b.jid: ("Bob", "none", None)}
        await (roster_iq(ca, "set", "<item jid='%s' name='Robert'/>" % b.jid)).send()
        assert await next_push(ca) == (b.jid, "Robert", "none", None)

        ca.send_presence(pto=b.jid, ptype="subscribe")
        assert await next_push(ca) == (b.jid, "Robert", "none", "subscribe")
        await cb.next_presence(pred=of_type("subscribe", a.jid))
        cb.send_presence(pto=a.jid, ptype="subscribed")
        assert await next_push(ca) == (b.jid, "Robert", "to", None)
        await ca.next_presence(pred=lambda p: p["from"].bare == b.jid and p["type"] == "available")

        cb.send_presence(pstatus="after the reload")
        p = await ca.next_presence(pred=lambda p: p["from"].bare == b.jid and
                                   p["status"] == "after the reload")
        assert p["type"] == "available"
        assert ca.dropped == [] and cb.dropped == []
        listed = [ln.split("\t")[0] for ln in server.ctl("sessions").stdout.splitlines()]
        assert str(ca.boundjid) in listed and str(cb.boundjid) in listed
    run(scenario(), timeout=scaled(40))


def test_reload_roster_bad_option_keeps_old_instance(server, accounts):
    """Editing the file to a bad roster option and reloading the module
    fails with the key, the old instance keeps serving rosters, and the
    server keeps running."""
    (a,) = accounts(1)
    server.config["modules"]["roster"] = {"max_items": 0}
    server.write_config()
    try:
        r = server.ctl("module", "reload", "roster")
        assert r.returncode == 1
        line = one_line(r)
        assert "modules.roster.max_items" in line and "running instance is kept" in line
    finally:
        server.config["modules"]["roster"] = True
        server.write_config()
    assert server.running

    async def scenario():
        c = await login(server, a)
        assert await roster_items(c) == {}
    run(scenario())


def test_module_commands_errors(server):
    """Unknown module, unknown host, and a module that is not loaded give
    one-line errors (exit 1)."""
    r = server.ctl("module", "reload", "nosuchmodule")
    assert r.returncode == 1 and "not loaded" in one_line(r)
    r = server.ctl("module", "load", "nosuchmodule")
    assert r.returncode == 1 and "mod_nosuchmodule.so not found" in one_line(r)
    r = server.ctl("module", "reload", "roster", "elsewhere.example")
    assert r.returncode == 1 and "unknown host elsewhere.example" in one_line(r)
    r = server.ctl("module", "frobnicate", "roster")
    assert r.returncode == 2


# ---- ABI ------------------------------------------------------------------------------------------

def test_other_abi_refused_by_running_server(server, sdk, hello_dir):
    """`module load` of a module built for module ABI 1.2 is refused with a
    message naming the file and both ABI versions; nothing changes."""
    path = build_oldabi(sdk, hello_dir)
    try:
        r = server.ctl("module", "load", "oldabi")
        assert r.returncode == 1
        line = one_line(r)
        assert str(path) in line
        assert "built for module ABI 1.2" in line and re.search(r"provides 2\.\d+", line), line
        assert "oldabi" not in server.ctl("module", "list").stdout
    finally:
        path.unlink()


def test_other_abi_refused_at_start(server_factory, sdk, tmp_path):
    """A configuration naming a module of another ABI: `xmppctl check` and
    xmppd both refuse it with the file and both versions; xmppd exits."""
    d = tmp_path / "mods"
    path = build_oldabi(sdk, d)
    srv = server_factory({"module_path": [str(d), str(MODULES)], "modules": {"oldabi": True}},
                         start=False)
    r = srv.ctl("check")
    assert r.returncode == 1
    assert str(path) in one_line(r) and "ABI 1.2" in one_line(r)
    p = subprocess.run([str(XMPPD), "-c", str(srv.config_path)], capture_output=True, text=True,
                       timeout=scaled(20))
    assert p.returncode != 0
    assert str(path) in p.stderr and "built for module ABI 1.2" in p.stderr


def test_reload_providers(server, accounts):
    """The auth provider (auth_internal) and the storage driver
    (storage_sqlite) are single-owner registrations: reloading them hands
    the registration to the new instance. Logins, account creation and
    stored rosters keep working; a connected client stays."""
    (a,) = accounts(1)

    async def scenario():
        c = await login(server, a)
        await (roster_iq(c, "set", "<item jid='x@example.net' name='X'/>")).send()
        driver = next(n for n in server.config["modules"] if n.startswith("storage_"))
        for mod in ("auth_internal", driver):
            r = server.ctl("module", "reload", mod)
            assert r.returncode == 0, r.stderr
        (b,) = accounts(1)  # xmppctl adduser through the provider
        cb = await login(server, b)
        assert await roster_items(cb) == {}
        assert await roster_items(c) == {"x@example.net": ("X", "none", None)}
        await (roster_iq(c, "set", "<item jid='y@example.net'/>")).send()
        assert c.dropped == []
    run(scenario())
    r = server.ctl("module", "reload", "roster")
    assert r.returncode == 0, r.stderr

    async def again():
        c = await login(server, a)  # rosters come back from storage
        assert set(await roster_items(c)) == {"x@example.net", "y@example.net"}
    run(again())
