#!/bin/sh
# Lab: nginx image's ENTRYPOINT; the real one runs /docker-entrypoint.d/*.sh first.
set -e
if [ "$1" = nginx ] || [ "$1" = nginx-debug ]; then
    echo "/docker-entrypoint.sh: Configuration complete; ready for start up"
fi
exec "$@"
