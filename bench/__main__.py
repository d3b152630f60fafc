"""`python -m bench`: run every benchmark."""

import sys

print("no benchmarks yet", file=sys.stderr)
