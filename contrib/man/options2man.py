#!/usr/bin/env python3
"""Markdown option tables (`xmppctl options --markdown`) to man(7) text:
one .SS per module, one .TP per option. Used by contrib/gen-docs.sh for
xmppd.json(5), so the man page and docs/configuration.md come from the
same option tables.

    options2man.py OPTIONS.md > body.man
"""
import re
import sys


def roff(text):
    """Escapes text for roff: backslashes, and a dot or quote at a line start."""
    text = text.replace("\\", "\\e")
    text = re.sub(r"`([^`]*)`", r"\\fB\1\\fR", text)
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def cells(line):
    # split on | not escaped as \|
    parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [p.strip().replace("\\|", "|") for p in parts]


def main(path):
    out = []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        m = re.match(r"^### (.+)$", line)
        if m:
            out.append(".SS %s" % roff(m.group(1)))
            continue
        if line.startswith("| name ") or line.startswith("|---"):
            continue
        if line.startswith("| "):
            name, typ, default, rng, flags, doc = (cells(line) + [""] * 6)[:6]
            bits = [typ]
            if default and default != "-":
                bits.append("default " + default)
            if rng:
                bits.append(rng)
            if flags:
                bits.append(flags)
            out.append(".TP")
            out.append("%s (%s)" % (roff(name), roff(", ".join(bits))))
            out.append(roff(doc) if doc else "\\&")
            continue
        if line.strip():
            out.append(".PP")
            out.append(roff(line.strip()))
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
