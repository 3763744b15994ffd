"""Packets captured from serf 0.8.2 (Debian's ``/usr/bin/serf``) run with
``-node=capt -bind=10.251.7.2:7946 -discover=lab`` in a network namespace on a
host named ``vm``.

``SERF_QUERY`` is what its poll multicast to 224.0.0.251:5353 (hashicorp/mdns,
from an ephemeral port); ``SERF_ANSWER`` is its reply, sent unicast to the
querier, to a PTR question for ``_serf_lab._tcp.local.``.
"""

SERF_QUERY = bytes.fromhex(
    "07f500000001000000000000095f736572665f6c6162045f746370056c6f63616c00000c0001")

SERF_ANSWER = bytes.fromhex(
    "000084000000000400000000095f736572665f6c6162045f746370056c6f63616c00000c0001"
    "0000007800070463617074c00cc02c0021000100000078000a000a00011f0a02766d00c045"
    "000100010000007800040afb0702c02c00100001000000780013125365726620276c616227"
    "20636c7573746572")
