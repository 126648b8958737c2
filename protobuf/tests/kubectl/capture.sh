#!/usr/bin/env bash
# Captures the protobuf bodies kubectl sends for `kubectl create ...` and, for each,
# what the same command prints with `--dry-run=client -o json`.
#
#   tests/kubectl/capture.sh [KUBECTL] [OUTDIR]
#
# Starts capture_server.py on 127.0.0.1 (plain HTTP; kubectl talks to it with
# --server=http://...), runs the commands, stops the server. kubectl 1.32 and later send
# protobuf for these; older ones send JSON (their bodies are then skipped).
set -u
KC=${1:-kubectl}
OUT=${2:-$(dirname "$0")}
PORT=${PORT:-18931}
BODIES=$(mktemp -d)
python3 "$(dirname "$0")/capture_server.py" "$PORT" "$BODIES" &
SERVER=$!
trap 'kill $SERVER; rm -rf "$BODIES"' EXIT
sleep 1
K="$KC --server=http://127.0.0.1:$PORT -n default"
mkdir -p "$OUT"

run() { # NAME ARGS... (a `--` in ARGS starts the container command)
  local name=$1; shift
  rm -f "$BODIES"/*.bin
  $K "$@" >/dev/null 2>"$BODIES/err" || { echo "FAIL $name: $(head -2 "$BODIES/err")"; return; }
  local f
  f=$(ls "$BODIES"/*.bin 2>/dev/null | head -1)
  if [ -z "$f" ] || [ "$(head -c3 "$f")" != "k8s" ]; then echo "no protobuf body for $name"; return; fi
  mv "$f" "$OUT/$name.pb"
  [ "$name" = token ] && return # create token has no --dry-run
  local pre=() post=() seen=0
  for a in "$@"; do
    [ "$a" = "--" ] && seen=1
    if [ $seen = 1 ]; then post+=("$a"); else pre+=("$a"); fi
  done
  $K "${pre[@]}" --dry-run=client -o json "${post[@]}" |
    python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin), indent=2))' >"$OUT/$name.json"
}

run configmap create configmap cm1 --from-literal=a=b --from-literal=empty=
run secret create secret generic s1 --from-literal=password=s3cr3t
run deployment create deployment web --image=nginx:1.27 --replicas=3 --port=80
run deployment-zero create deployment idle --image=nginx --replicas=0
run job create job j1 --image=busybox -- sleep 10
run cronjob create cronjob c1 --image=busybox --schedule="*/5 * * * *" -- echo hi
run namespace create namespace ns1
run service-clusterip create service clusterip svc1 --tcp=80:8080
run service-nodeport create service nodeport np1 --tcp=80:8080 --node-port=30080
run serviceaccount create serviceaccount sa1
run quota create quota q1 --hard=cpu=1,memory=1Gi,pods=10
run token create token sa1 --duration=1h --audience=api
run priorityclass create priorityclass pc1 --value=1000 --description=test
run role create role r1 --verb=get --verb=list --resource=pods
run pdb create poddisruptionbudget pdb1 --selector=app=web --min-available=50%
run ingress create ingress ing1 --rule=foo.com/bar=svc1:8080
