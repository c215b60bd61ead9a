import logging
import os
import sys

from .cli import main

code = main()
# Skip the interpreter's teardown: freeing torch's modules and their C++ state takes 0.5-1 s of a
# 2-core machine (bench/quant_speed.py), as long as a min/max quantize's own work. By now every
# result is written (atomically) and the process group is gone; only the standard streams and
# logging still hold buffered output.
for stream in (sys.stdout, sys.stderr):
    try:
        stream.flush()
    except OSError:  # a reader that went away (a closed pipe): nothing left to tell it
        pass
logging.shutdown()
os._exit(code)
