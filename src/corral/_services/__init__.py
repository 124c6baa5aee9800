"""Resilience for calls to outside services, and HTTP/LLM service actors.

This layer sits on the core's public seams (:class:`corral.CallPolicy`,
:class:`corral.Call`, the instrument hooks); the core never imports it.
"""
