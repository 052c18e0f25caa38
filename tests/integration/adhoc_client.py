"""Client side of XEP-0050 ad-hoc commands and the XEP-0133 admin set, as
raw stanzas: shared by the tests of mod_adhoc, mod_admin_adhoc and
mod_motd."""

from xmpptest import NS_CLIENT, q, tostr

NS_CMD = "http://jabber.org/protocol/commands"
NS_ADMIN = "http://jabber.org/protocol/admin"
NS_DATA = "jabber:x:data"


def command(c, node, action=None, sid=None, form=None, to="localhost"):
    attrs = " node='%s'" % node
    if action:
        attrs += " action='%s'" % action
    if sid:
        attrs += " sessionid='%s'" % sid
    return c.iq("<command xmlns='%s'%s>%s</command>" % (NS_CMD, attrs, form or ""),
                type_="set", to=to)


def submit(**fields):
    out = "<x xmlns='%s' type='submit'>" % NS_DATA
    out += "<field var='FORM_TYPE' type='hidden'><value>%s</value></field>" % NS_ADMIN
    for var, vals in fields.items():
        if not isinstance(vals, (list, tuple)):
            vals = [vals]
        name = "password-verify" if var == "password_verify" else var
        out += "<field var='%s'>%s</field>" % (name, "".join("<value>%s</value>" % v for v in vals))
    return out + "</x>"


def cmd_el(iq):
    el = iq.find(q(NS_CMD, "command"))
    assert el is not None, tostr(iq)
    return el


def notes(iq):
    return [(n.get("type"), n.text) for n in cmd_el(iq).findall(q(NS_CMD, "note"))]


def values(iq, var):
    x = cmd_el(iq).find(q(NS_DATA, "x"))
    for f in x.findall(q(NS_DATA, "field")):
        if f.get("var") == var:
            return [v.text for v in f.findall(q(NS_DATA, "value"))]
    return None


def spec_condition(iq):
    err = iq.find(q(NS_CLIENT, "error"))
    return [c.tag.split("}")[1] for c in err if c.tag.startswith("{%s}" % NS_CMD)]


def run_admin(c, name, **fields):
    """Runs admin command name: execute (a form, or the result), then submit."""
    first = command(c, NS_ADMIN + "#" + name)
    assert first.get("type") == "result", tostr(first)
    el = cmd_el(first)
    if el.get("status") == "completed":
        return first
    assert el.get("status") == "executing"
    return command(c, NS_ADMIN + "#" + name, sid=el.get("sessionid"), form=submit(**fields))
