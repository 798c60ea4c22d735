#!/usr/bin/env python3
"""Turn an official PyTorch checkpoint (.pth) into a safetensors state dict for `convert --official`.

usage: scripts/pth_to_safetensors.py IN.pth OUT.safetensors [--key state_dict]
Official checkpoints often wrap the state dict (e.g. {'model': sd} or {'state_dict': sd}); --key names the
entry, otherwise the first dict of tensors found is used. A 'module.' prefix (DataParallel) is removed.
Needs torch; the safetensors package is not needed (the file is written by hand, the format is small).
"""
import json, struct, sys

import torch


def find_state_dict(obj, key):
    if key:
        return obj[key]
    if isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):
        return obj
    if isinstance(obj, dict):
        for v in obj.values():
            if isinstance(v, dict):
                try:
                    return find_state_dict(v, None)
                except ValueError:
                    pass
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    raise ValueError("no state dict of tensors found; name it with --key")


def main():
    args = sys.argv[1:]
    key = None
    if "--key" in args:
        i = args.index("--key")
        key = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    sd = find_state_dict(torch.load(args[0], map_location="cpu"), key)
    header, blobs, offset = {}, [], 0
    for name, t in sd.items():
        name = name[7:] if name.startswith("module.") else name
        t = t.detach().to(torch.float32).contiguous()
        data = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(args[1], "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    print(f"{args[1]}: {len(header)} tensors")


if __name__ == "__main__":
    main()
