"""The opt-in unlock agent: unlock once, then serve the same user's commands over a socket.

:mod:`.server` holds the unlocked stack and does the cryptography;
:mod:`.client` lets a command find the agent for its exact config;
:mod:`._wire` is what both share: the runtime directory, the config's
identity and the frames.  Nothing here is imported unless a command asks
for the agent, and this package imports nothing of its own.
"""
