"""mDNS service discovery, as serf's ``-discover`` does it (hashicorp/mdns on the wire).

:mod:`.codec` reads and writes the DNS messages; :mod:`.rule` decides, without
I/O, what to ask, what to answer and whom to join; the agent's shell
(:mod:`swimlib.agent.mdns`) moves the datagrams. Imported only by an agent
started with ``-discover``.
"""
