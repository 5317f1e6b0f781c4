#!/bin/bash
# Trains the shipped models one after another (2 cores: never two at once). Resumable.
cd "$(dirname "$0")/.."
for c in "$@"; do
  out=runs/$c
  mkdir -p $out
  if [ -f $out/DONE ]; then continue; fi
  resume=""; [ -f $out/checkpoints/last.pt ] && resume=--resume
  echo "$(date) start $c $resume" >> runs/queue.log
  nice -n 5 .venv/bin/python -m training.train --config training/configs/$c.yaml --out $out $resume >> $out/train.log 2>&1  # appended: a resume keeps the log of the first start
  rc=$?  # before any $(...) below, which would overwrite it
  [ $rc -eq 0 ] && touch $out/DONE
  echo "$(date) end $c rc=$rc" >> runs/queue.log
done
