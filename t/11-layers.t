#!/usr/bin/env python3
# The layer rule of src/ (contrib/check-layers): the real tree passes; a
# planted upward include (net/ including smtp/), a sideways one (lua/
# including smtp/) and one into main fail, naming the file and the layers.
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK = os.path.join(ROOT, "contrib", "check-layers")


def run(src):
    p = subprocess.run([CHECK, src], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


rc, out = run(os.path.join(ROOT, "src"))
ok(rc == 0, "the tree keeps the layer rule", out)

PLANTS = [
    ("net/dns.c", "smtp/session.h", r"net/dns\.c: includes smtp/session\.h \(net may not include smtp\)"),
    ("lua/plugins.c", "smtp/server.h", r"lua/plugins\.c: includes smtp/server\.h \(lua may not include smtp\)"),
    ("core/log.c", "proto/hooks.h", r"core/log\.c: includes proto/hooks\.h \(core may not include proto\)"),
    ("smtp/session.c", "lua/plugins.h", r"smtp/session\.c: includes lua/plugins\.h"),
]
for path, inc, want in PLANTS:
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "src")
        shutil.copytree(os.path.join(ROOT, "src"), src)
        with open(os.path.join(src, path), "a") as f:
            f.write('#include "%s"\n' % inc)
        rc, out = run(src)
        isnt(rc, 0, "planted %s in %s: fails" % (inc, path))
        like(out, want, "planted %s in %s: named" % (inc, path))

done()
