# One image for every node of the lab (docker-compose.yml, docs/lab.md):
#   balancer:  lbadapter run ...       (embedded swimlib agent, HAProxy as its child)
#   backend:   lab-node backend        (the web app and `swimlib agent --tag role=backend`)
#
# FROM a local base image, as there is no registry to pull from:
# `python3 scripts/docker_lab.py base` builds it with mmdebstrap (Debian
# bookworm, python3, haproxy) plus swimlib's dependencies from pip wheels in
# /opt/swimlib/deps, and imports it as swimlib-base:bookworm. Nothing here
# needs a network. Few steps: with the vfs storage driver every layer is a
# full copy of the image.
ARG BASE=swimlib-base:bookworm
FROM ${BASE}

# pyproject.toml, swimlib/, lbadapter/, scripts/container_node.py (.dockerignore)
COPY . /opt/swimlib/src/

# The commands a pip install would create, and bytecode (every agent start reads it).
RUN printf '#!/bin/sh\nexec python3 -m swimlib.cli "$@"\n' > /usr/local/bin/swimlib \
 && printf '#!/bin/sh\nexec python3 -m lbadapter.cli "$@"\n' > /usr/local/bin/lbadapter \
 && printf '#!/bin/sh\nexec python3 /opt/swimlib/src/scripts/container_node.py "$@"\n' \
        > /usr/local/bin/lab-node \
 && chmod 755 /usr/local/bin/swimlib /usr/local/bin/lbadapter /usr/local/bin/lab-node \
 && mkdir -p /var/lib/lbadapter \
 && PYTHONPATH=/opt/swimlib/src:/opt/swimlib/deps python3 -m compileall -q /opt/swimlib \
 && PYTHONPATH=/opt/swimlib/src:/opt/swimlib/deps \
        python3 -c "import swimlib.cli, lbadapter.cli, lbadapter.backend_app"

ENV PYTHONPATH=/opt/swimlib/src:/opt/swimlib/deps PYTHONUNBUFFERED=1 LANG=C.UTF-8
# gossip (UDP+TCP), the app (backends), the frontend and the stats page (balancer)
EXPOSE 7946/tcp 7946/udp 3000 80 1936
WORKDIR /var/lib/lbadapter
CMD ["lab-node", "backend", "--join", "ha"]
