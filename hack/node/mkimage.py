#!/usr/bin/env python3
"""mkimage.py OUT.tar NAME:TAG ROOTFS_DIR [ENTRYPOINT...]
Writes a single-layer image in `docker save` format (manifest.json + config + layer.tar),
which `ctr -n k8s.io images import OUT.tar` loads. No registry, no podman/docker needed."""
import hashlib, io, json, os, sys, tarfile

out, ref, rootfs, entry = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

def reset(ti):
    ti.uid = ti.gid = 0; ti.uname = ti.gname = "root"; ti.mtime = 0
    return ti

layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
    for name in sorted(os.listdir(rootfs)):
        t.add(os.path.join(rootfs, name), arcname=name, filter=reset)
layer_b = layer.getvalue()
diff_id = "sha256:" + hashlib.sha256(layer_b).hexdigest()
config = {
    "architecture": "amd64", "os": "linux",
    "config": {"Entrypoint": entry or None, "Env": ["PATH=/bin:/usr/bin"], "WorkingDir": "/"},
    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    "history": [{"created_by": "remora mkimage.py"}],
}
config_b = json.dumps(config, sort_keys=True).encode()
config_name = hashlib.sha256(config_b).hexdigest() + ".json"
layer_name = diff_id[7:] + "/layer.tar"
manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}]
with tarfile.open(out, "w") as t:
    for name, data in ((layer_name, layer_b), (config_name, config_b),
                       ("manifest.json", json.dumps(manifest).encode())):
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
print(out, ref, diff_id)
