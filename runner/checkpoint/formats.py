"""The checkpoint formats advrun reads, their names, and the magic bytes that tell files apart."""

# torch.save before 1.6 (and with _use_new_zipfile_serialization=False): a protocol-2 pickle of
# the magic number 0x1950a86a20f9469cfc6c comes first (torch/serialization.py, MAGIC_NUMBER)
LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")

TORCH_ZIP, TORCH_LEGACY, SAFETENSORS = "torch-zip", "torch-legacy", "safetensors"
FORMAT_NAMES = {
    TORCH_ZIP: "torch zip archive (torch.save, torch >= 1.6)",
    TORCH_LEGACY: "torch legacy serialization (torch.save before 1.6, or "
    "_use_new_zipfile_serialization=False)",
    SAFETENSORS: "safetensors",
}
SAVE_HINT = (
    "torch.save(model.state_dict(), 'model.pt') or safetensors.torch.save_file("
    "model.state_dict(), 'model.safetensors') writes a file advrun reads"
)
