#!/bin/bash
# usage: OLD=<checkout with its .venv> NEW=<checkout> N=4 ORDERS=40000 tools/scripts/compare-handlers.sh
# `clearing bench handlers` (in memory) alternately in two checkouts, so both sides share the machine's state;
: "${OLD:?set OLD to the old checkout}"; NEW=${NEW:-.}; N=${N:-4}; ORDERS=${ORDERS:-40000}
out=$(mktemp); : > $out
for i in $(seq $N); do
  for side in old new; do
    dir=$OLD; [ $side = new ] && dir=$NEW
    (cd $dir && .venv/bin/clearing bench handlers --orders $ORDERS --moto-orders 0 --json 2>/dev/null | tail -1 | python3 -c "import sys,json; d=json.load(sys.stdin)['memory']; print(json.dumps({'side':'$side', **{k: v['records_per_cpu_sec'] for k,v in d.items() if isinstance(v, dict)}}))") >> $out
  done
done
python3 - "$out" <<'PY'
import json, statistics
import sys; rows=[json.loads(l) for l in open(sys.argv[1])]
stages=[k for k in rows[0] if k!='side']
print(f"{'stage':18} {'old rec/CPU-s':>14} {'new rec/CPU-s':>14} {'new/old':>8}")
for s in stages:
    o=statistics.median(r[s] for r in rows if r['side']=='old'); n=statistics.median(r[s] for r in rows if r['side']=='new')
    print(f"{s:18} {o:14,.0f} {n:14,.0f} {n/o:8.1%}")
PY
