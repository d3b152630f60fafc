"""`python -m bench` (`make bench`): run every benchmark."""

from bench import function_rps

print("== function requests/s vs pgbench (same SQL)")
function_rps.main()
