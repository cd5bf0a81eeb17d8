"""csv-python: a realistic transform in Python. Takes a CSV document
`{"csv": "region,product,units,price\\n..."}` and returns totals per
region (units, revenue) and the median unit price per product, using only
the standard library (csv, statistics, decimal)."""

import csv
import io
import statistics
from decimal import Decimal, InvalidOperation

from fnhost import FunctionError, WitWorld, handler  # noqa: F401 (WitWorld: the export)

REQUIRED = ("region", "product", "units", "price")


@handler
def summarize(event, ctx):
    text = event.get("csv")
    if not isinstance(text, str):
        raise FunctionError("InvalidRequest", "csv must be a string")
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise FunctionError("InvalidRequest", f"missing columns: {', '.join(missing)}")
    regions = {}
    prices = {}
    for line, row in enumerate(reader, start=2):
        try:
            units = int(row["units"])
            price = Decimal(row["price"])
        except (ValueError, InvalidOperation):
            raise FunctionError("InvalidRequest", f"line {line}: units and price must be numbers")
        r = regions.setdefault(row["region"], {"units": 0, "revenue": Decimal(0)})
        r["units"] += units
        r["revenue"] += units * price
        prices.setdefault(row["product"], []).append(price)
    print(f"{sum(r['units'] for r in regions.values())} units in {len(regions)} regions")
    return {
        "regions": {
            k: {"units": v["units"], "revenue": str(v["revenue"])} for k, v in sorted(regions.items())
        },
        "median_price": {k: str(statistics.median(v)) for k, v in sorted(prices.items())},
    }
