"""Composition root: the only place that turns Settings into connected adapters, apps and loops.

``resources`` connects the services and builds the use cases; ``gateway`` wires a gateway process
(Litestar app, fanout hub, presence) and serves it; ``worker`` wires the worker process.
"""
