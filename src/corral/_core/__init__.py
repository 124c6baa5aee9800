"""corral's core: messages, mailbox, pile, actor cell, futures, refs, runtime.

It imports only anyio, attrs and the standard library; tracing, services and
the command line sit on top of it and use its public seams.
"""
