"""``TEAM_ENTRY``: one valid user registry entry (a timm ResNet-18 with a weights file on a closed
loopback port), the starting point of the registry and catalogue tests that vary it."""

TEAM_ENTRY = {
    "name": "teamnet.v1",
    "architecture": {"library": "timm", "builder": "resnet18"},
    "files": [{"role": "weights", "filename": "teamnet.safetensors", "format": "safetensors",
               "checksum": {"sha256": "ab" * 32}, "sources": ["http://127.0.0.1:1/teamnet.safetensors"]}],
    "license": "MIT",
    "preprocessing": {"input_size": [3, 64, 64]},
    "head": {"num_classes": 2, "labels": ["no", "yes"]},
}
