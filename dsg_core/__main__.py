import logging
import os
import sys

from .cli import main

code = main()
# Skip the interpreter's teardown: freeing torch's modules and their C++ state takes 0.5-1 s of a
# 2-core machine (bench/quant_speed.py), as long as a min/max quantize's own work. By now every
# result is written (atomically) and the process group is gone; only the standard streams and
# logging still hold buffered output. A profiler, tracer or coverage run gets the normal exit, so
# its report is still written.
if sys.gettrace() or sys.getprofile() or "coverage" in sys.modules:
    sys.exit(code)
for stream in (sys.stdout, sys.stderr):
    try:
        stream.flush()
    except OSError:  # a full disk or a reader gone away: the output is lost, so say so, as Python does
        code = code or 120
logging.shutdown()
os._exit(code)
