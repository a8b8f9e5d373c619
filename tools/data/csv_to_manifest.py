#!/usr/bin/env python3
"""Turns a CSV of human video preferences into an sdpo preference dataset manifest.

Pure file plumbing: the videos and prompts must already be encoded (offline, with the model's
VAE and text encoder) into one .safetensors file per video and one per prompt. This script pairs
them up according to the CSV labels, links (or copies) the files into the dataset directory and
writes manifest.jsonl. See docs/data.md for the format and a worked example.

  tools/data/csv_to_manifest.py --csv prefs.csv --latents enc/latents --contexts enc/prompts \
      --out data/my_prefs

CSV (column names configurable): prompt, video_a, video_b, label, optionally id and weight.
  video_a / video_b  a video path or name; its latent file is <latents>/<stem>.safetensors
                     (stem = file name without directory and extension)
  label              which video the raters preferred: a value in --a-wins (default A,a,video_a)
                     or --b-wins (default B,b,video_b); values in --ties (default
                     tie,same,equal,=) are skipped; anything else is an error
  prompt             its embedding file is <contexts>/<sha1(prompt)[:16]>.safetensors, or
                     <contexts>/<value of --prompt-id-col>.safetensors when that column is given
Only the Python standard library is needed. Safetensors headers are read to check that the keys
exist, that a pair's latents have one shape and that contexts are [L, D].
"""

import argparse
import csv
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile


class ConversionError(Exception):
    pass


def read_safetensors_header(path, cache):
    """Returns {name: {"dtype", "shape", ...}} of a safetensors file (header only)."""
    if path in cache:
        return cache[path]
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise ConversionError(f"{path}: not a safetensors file (shorter than 8 bytes)")
            (n,) = struct.unpack("<Q", raw)
            if n > 100_000_000:
                raise ConversionError(f"{path}: header length {n} is implausible")
            header = json.loads(f.read(n).decode("utf-8"))
    except OSError as e:
        raise ConversionError(f"{path}: cannot read: {e}") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConversionError(f"{path}: bad safetensors header: {e}") from e
    header.pop("__metadata__", None)
    cache[path] = header
    return header


def stem(value):
    base = os.path.basename(value.strip())
    return os.path.splitext(base)[0] if "." in base else base


def place(src, out_dir, subdir, mode, placed):
    """Links or copies src into out_dir/subdir; returns the path relative to out_dir."""
    rel = f"{subdir}/{os.path.basename(src)}"
    if rel in placed:
        if placed[rel] != os.path.realpath(src):
            raise ConversionError(f"two different files would both become {rel}: "
                                  f"{placed[rel]} and {src}")
        return rel
    dst = os.path.join(out_dir, rel)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.lexists(dst):
        os.remove(dst)
    if mode == "symlink":
        os.symlink(os.path.realpath(src), dst)
    elif mode == "hardlink":
        os.link(src, dst)
    else:
        shutil.copyfile(src, dst)
    placed[rel] = os.path.realpath(src)
    return rel


def convert(args):
    a_wins = {v.strip() for v in args.a_wins.split(",")}
    b_wins = {v.strip() for v in args.b_wins.split(",")}
    ties = {v.strip() for v in args.ties.split(",")}
    overlap = (a_wins & b_wins) | (a_wins & ties) | (b_wins & ties)
    if overlap:
        raise ConversionError(f"label values {sorted(overlap)} are in more than one of "
                              "--a-wins, --b-wins, --ties")
    os.makedirs(args.out, exist_ok=True)
    manifest_path = os.path.join(args.out, "manifest.jsonl")
    if os.path.exists(manifest_path) and not args.overwrite:
        raise ConversionError(f"{manifest_path} exists (pass --overwrite to replace it)")

    headers, placed, lines, seen_ids = {}, {}, [], {}
    skipped_ties = 0
    with open(args.csv, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        needed = [args.prompt_col, args.a_col, args.b_col, args.label_col]
        needed += [c for c in (args.id_col, args.weight_col, args.prompt_id_col) if c]
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise ConversionError(f"{args.csv}: missing column(s) {missing}; "
                                  f"the header has {reader.fieldnames}")
        for row_number, row in enumerate(reader, start=2):  # line 1 is the header
            where = f"{args.csv} line {row_number}"
            label = (row[args.label_col] or "").strip()
            if label in ties:
                skipped_ties += 1
                continue
            if label in a_wins:
                winner_video, loser_video = row[args.a_col], row[args.b_col]
            elif label in b_wins:
                winner_video, loser_video = row[args.b_col], row[args.a_col]
            else:
                raise ConversionError(f"{where}: label {label!r} is not in --a-wins "
                                      f"{sorted(a_wins)}, --b-wins {sorted(b_wins)} or --ties "
                                      f"{sorted(ties)}")
            prompt = row[args.prompt_col]
            pair_id = row[args.id_col].strip() if args.id_col else f"row-{row_number:06d}"
            if not pair_id:
                raise ConversionError(f"{where}: empty id")
            if pair_id in seen_ids:
                raise ConversionError(f"{where}: duplicate id {pair_id!r} "
                                      f"(first on line {seen_ids[pair_id]})")
            seen_ids[pair_id] = row_number
            weight = 1.0
            if args.weight_col:
                try:
                    weight = float(row[args.weight_col])
                except ValueError as e:
                    raise ConversionError(f"{where}: weight {row[args.weight_col]!r} is not a "
                                          "number") from e
                if not (weight >= 0 and weight != float("inf")):
                    raise ConversionError(f"{where}: weight must be finite and >= 0, got {weight}")
            if args.prompt_id_col:
                prompt_file = row[args.prompt_id_col].strip()
            else:
                prompt_file = hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:16]

            refs = {}
            for field, directory, name, key in (
                    ("winner", args.latents, stem(winner_video), args.latent_key),
                    ("loser", args.latents, stem(loser_video), args.latent_key),
                    ("context", args.contexts, prompt_file, args.context_key)):
                src = os.path.join(directory, name + ".safetensors")
                if not os.path.isfile(src):
                    raise ConversionError(f"{where}: {field} file {src} does not exist")
                header = read_safetensors_header(src, headers)
                if key not in header:
                    raise ConversionError(f"{where}: {field} file {src} has no tensor {key!r} "
                                          f"(it has {sorted(header)[:8]})")
                refs[field] = (place(src, args.out, "latents" if field != "context" else
                                     "contexts", args.mode, placed), key,
                               header[key].get("shape"))
            if refs["winner"][2] != refs["loser"][2]:
                raise ConversionError(f"{where}: winner {refs['winner'][0]} {refs['winner'][2]} "
                                      f"and loser {refs['loser'][0]} {refs['loser'][2]} differ "
                                      "in shape")
            if len(refs["winner"][2] or []) != 4 or len(refs["context"][2] or []) != 2:
                raise ConversionError(f"{where}: expected latents [C, F, H, W] and a context "
                                      f"[L, D], got {refs['winner'][2]} and "
                                      f"{refs['context'][2]}")
            entry = {"id": pair_id, "prompt": prompt, "weight": weight,
                     "meta": {"csv_line": row_number, "label": label,
                              "video_winner": winner_video, "video_loser": loser_video}}
            for field, (file, key, _) in refs.items():
                entry[field] = {"file": file, "key": key}
            lines.append(json.dumps(entry, ensure_ascii=False, sort_keys=True))
    if not lines:
        raise ConversionError(f"{args.csv}: no preference pairs ({skipped_ties} ties skipped)")

    fd, tmp = tempfile.mkstemp(dir=args.out, prefix=".manifest.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, manifest_path)
    return len(lines), skipped_ties


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--csv", required=True, help="the preference CSV")
    p.add_argument("--latents", required=True, help="directory of <video stem>.safetensors")
    p.add_argument("--contexts", required=True, help="directory of <prompt id>.safetensors")
    p.add_argument("--out", required=True, help="the dataset directory to write")
    p.add_argument("--latent-key", default="latent", help="tensor name in latent files")
    p.add_argument("--context-key", default="context", help="tensor name in context files")
    p.add_argument("--prompt-col", default="prompt")
    p.add_argument("--a-col", default="video_a")
    p.add_argument("--b-col", default="video_b")
    p.add_argument("--label-col", default="label")
    p.add_argument("--id-col", default=None, help="pair ids (default: row-<csv line>)")
    p.add_argument("--weight-col", default=None, help="per-pair weights (default: 1)")
    p.add_argument("--prompt-id-col", default=None,
                   help="names the context file (default: sha1 of the prompt, 16 hex digits)")
    p.add_argument("--a-wins", default="A,a,video_a")
    p.add_argument("--b-wins", default="B,b,video_b")
    p.add_argument("--ties", default="tie,Tie,same,Same,equal,=")
    p.add_argument("--mode", choices=["symlink", "hardlink", "copy"], default="symlink",
                   help="how files get into the dataset directory")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    try:
        n, ties = convert(args)
    except ConversionError as e:
        print(f"csv_to_manifest: error: {e}", file=sys.stderr)
        return 1
    print(f"csv_to_manifest: wrote {n} pairs to {os.path.join(args.out, 'manifest.jsonl')}"
          f" ({ties} ties skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
