"""`python -m bench` (or `mailq bench` from a checkout): the project measures its own speed,
next to a bare SQL loop (the ceiling) and the peers.

Everything runs in one invocation on one Postgres server, a fresh database per measurement,
interleaved over rounds (median of 3 by default). See bench/plan.py for how a measurement is
described, so that peers and new measures can be added. Not shipped in the wheel.
"""
