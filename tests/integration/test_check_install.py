"""What `xmppctl check` catches before a start would fail, `xmppctl cert`,
the programs' --help and --version, and the shipped configuration: the
example (the installed default) validates, holds the default modules, and
is JSON with comments the server reads."""

import copy
import json
import re
import socket
import subprocess

import pytest

import pie_util
from conftest import GEN_CERT, MODULES, XMPPCTL, XMPPD, REPO
from xmpptest import free_port, scaled


def ctl(config_path, *args):
    return subprocess.run([str(XMPPCTL), "-c", str(config_path)] + list(args),
                          capture_output=True, text=True, timeout=scaled(30))


@pytest.fixture
def setup(tmp_path, cert_dir):
    """A valid configuration in tmp_path (no server running) and a writer
    of variants of it."""
    data = tmp_path / "data"
    data.mkdir()
    base = {
        "data_dir": str(data),
        "module_path": [str(MODULES)],
        "tls": {"cert": str(cert_dir / "localhost.crt"), "key": str(cert_dir / "localhost.key")},
        "listeners": [{"type": "c2s", "address": "127.0.0.1", "port": free_port()}],
        "modules": dict({"storage_sqlite": {}, "auth_internal": {}}, **pie_util.default_modules()),
        "hosts": {"localhost": {}},
    }

    def write(mutate=None, name="xmppd.json"):
        cfg = copy.deepcopy(base)
        if mutate:
            mutate(cfg)
        p = tmp_path / name
        p.write_text(json.dumps(cfg, indent=2))
        return p
    write.base = base
    write.dir = tmp_path
    return write


def other_cert(tmp_path, name):
    d = tmp_path / ("c-" + name)
    d.mkdir()
    subprocess.run(["bash", str(GEN_CERT), str(d), name], check=True, stdout=subprocess.DEVNULL)
    return d / (name + ".crt"), d / (name + ".key")


def test_check_passes_a_good_configuration(setup):
    r = ctl(setup(), "check")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith(": OK")
    assert "warning" not in r.stderr


def test_check_key_not_of_certificate(setup):
    """A key that is not the certificate's: TLS could never start."""
    _, key = other_cert(setup.dir, "other.example")
    r = ctl(setup(lambda c: c["tls"].update(key=str(key))), "check")
    assert r.returncode == 1
    assert re.search(r":\d+: tls\.key: .* is not the private key of the certificate", r.stderr), r.stderr


def test_check_certificate_not_covering_host(setup):
    """RFC 6125: the certificate must name the host (xmppctl cert tells
    what it names)."""
    crt, key = other_cert(setup.dir, "other.example")
    p = setup(lambda c: c["tls"].update(cert=str(crt), key=str(key)))
    r = ctl(p, "check")
    assert r.returncode == 1
    assert "does not cover the host localhost" in r.stderr, r.stderr
    cert = ctl(p, "cert")
    assert cert.returncode == 1
    assert "names     other.example" in cert.stdout
    assert "DOES NOT COVER THE HOST" in cert.stdout


def test_check_a_host_of_its_own_certificate(setup):
    """A second host without a certificate naming it: the error names it;
    with its own certificate (hosts.NAME.tls) the check passes."""
    crt, key = other_cert(setup.dir, "second.example")

    def two_hosts(c):
        c["hosts"]["second.example"] = {}
    r = ctl(setup(two_hosts), "check")
    assert r.returncode == 1
    assert "does not cover the host second.example" in r.stderr

    def own(c):
        c["hosts"]["second.example"] = {"tls": {"cert": str(crt), "key": str(key)}}
    r = ctl(setup(own), "check")
    assert r.returncode == 0, r.stderr


def test_cert_report(setup):
    r = ctl(setup(), "cert", "localhost")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "status    valid, covers the host, key matches, self-signed" in r.stdout
    assert re.search(r"expires   \d+ days left", r.stdout)
    assert ctl(setup(), "cert", "nowhere.example").returncode == 2


def test_check_data_dir_missing_or_unwritable(setup):
    missing = setup.dir / "nope"
    r = ctl(setup(lambda c: c.update(data_dir=str(missing))), "check")
    assert r.returncode == 1
    assert "data_dir: %s: No such file or directory" % missing in r.stderr
    a_file = setup.dir / "file"
    a_file.write_text("")
    r = ctl(setup(lambda c: c.update(data_dir=str(a_file))), "check")
    assert "is not a folder" in r.stderr


def test_check_port_in_use(setup):
    """A listener whose port another program holds."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        p = setup(lambda c: c["listeners"].__setitem__(0, {"type": "c2s", "address": "127.0.0.1",
                                                           "port": port}))
        r = ctl(p, "check")
    assert r.returncode == 1
    assert re.search(r"listeners\.0: cannot listen on \[127\.0\.0\.1\]:%d: Address already in use"
                     % port, r.stderr), r.stderr


def test_check_address_not_of_this_machine(setup):
    p = setup(lambda c: c["listeners"][0].update(address="192.0.2.1"))
    r = ctl(p, "check")
    assert r.returncode == 1
    assert "not an address of this machine" in r.stderr


def test_check_unknown_module_suggests_the_name(setup):
    def typo(c):
        c["modules"]["rostr"] = c["modules"].pop("roster")
    r = ctl(setup(typo), "check")
    assert r.returncode == 1
    assert 'module rostr: mod_rostr.so not found in module_path' in r.stderr
    assert 'did you mean "roster"?' in r.stderr


def test_check_reports_every_error_at_once(setup):
    """Every problem of the file and of the machine in one run."""
    _, key = other_cert(setup.dir, "other.example")

    def many(c):
        c["data_dir"] = str(setup.dir / "missing")
        c["tls"]["key"] = str(key)
        c["modules"]["vcrad"] = {}
        c["limits"] = {"max_depth": 0}
    r = ctl(setup(many), "check")
    assert r.returncode == 1
    for needle in ("data_dir:", "tls.key:", "module vcrad", "limits.max_depth", "4 errors"):
        assert needle in r.stderr, (needle, r.stderr)


def test_check_warns_of_a_host_without_rfc6121_modules(setup):
    """RFC 6121: without roster and presence a host is no IM server. A
    warning, not an error: the server does start."""
    def bare(c):
        c["modules"] = {"storage_sqlite": {}, "auth_internal": {}}
    r = ctl(setup(bare), "check")
    assert r.returncode == 0, r.stderr
    for m in ("roster", "presence", "offline", "disco"):
        assert re.search(r"warning: .*hosts\.localhost: no module %s: " % m, r.stderr), r.stderr


def test_check_skips_ports_of_a_running_server(server):
    """The running server holds its ports: check says so instead of
    reporting them in use."""
    r = server.ctl("check")
    assert r.returncode == 0, r.stderr
    assert "the server is running: ports not tried" in r.stdout


def test_version_and_help():
    for prog in (XMPPD, XMPPCTL):
        v = subprocess.run([str(prog), "--version"], capture_output=True, text=True)
        assert v.returncode == 0 and re.match(r"^xmpp(d|ctl) \d+\.\d+\.\d+$", v.stdout.strip()), v
    h = subprocess.run([str(XMPPD), "--help"], capture_output=True, text=True)
    assert h.returncode == 0 and "--config FILE" in h.stdout
    bad = subprocess.run([str(XMPPD), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2


def test_example_configuration_is_the_complete_default(tmp_path, cert_dir):
    """contrib/xmppd.example.json (installed as the default configuration):
    JSON with comments that xmppctl check passes with its paths filled in,
    every module of its default block built, an s2s section shown."""
    text = (REPO / "contrib" / "xmppd.example.json").read_text()
    assert "// BEGIN DEFAULT MODULES" in text and '"s2s"' in text
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "certs").mkdir()
    for f in ("localhost.crt", "localhost.key"):
        (tmp_path / "certs" / f).write_bytes((cert_dir / f).read_bytes())
    text = text.replace('// "data_dir": "/var/lib/xmppd",', '"data_dir": "%s",' % data)
    text = text.replace('// "module_path": ["/usr/lib/xmppd"],', '"module_path": ["%s"],' % MODULES)
    port1, port2 = free_port(), free_port()
    text = text.replace('"port": 5222', '"port": %d' % port1).replace('"port": 5223', '"port": %d' % port2)
    p = tmp_path / "xmppd.json"
    p.write_text(text)
    r = ctl(p, "check")
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr
    for name in pie_util.default_modules():
        assert (MODULES / name).is_dir(), "default module %s is not built" % name
