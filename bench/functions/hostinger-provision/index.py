"""The real `hostinger-provision` function, served by the benchmark app as it is."""

from pathlib import Path

from aerelion.functions import load_function

function = load_function(Path(__file__).resolve().parents[3] / "functions" / "hostinger-provision")
