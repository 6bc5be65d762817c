"""Benchmarks: they print figures and never gate on time.

None of them times the store. A store timing at scale (thousands of templates, a gallery search, an
index lookup) is a DynamoDB Local figure or it is not a figure: moto copies the whole table on every
transaction and scans a whole table for an index query (a one-item lookup on the subject index took
about 70 ms, a 5,000-person search about 3.4 s), so on moto it measures moto. A benchmark that prints
store timings says which backend it ran on (``tests/_backends.py`` starts DynamoDB Local).
"""
