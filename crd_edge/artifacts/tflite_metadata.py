"""The standard TFLite metadata (the ``TFLITE_METADATA`` entry, a ``ModelMetadata`` flatbuffer with
file identifier ``M001``) that Android's tooling reads: Android Studio's model view, the LiteRT
Support Library's metadata extractor and the Task Library look there, not at crd-edge's own
``crd_edge`` JSON entry, for what the input and output tensors are (an RGB image each), how
pixels are normalised (mean 127.5, std 127.5: [0, 255] -> [-1, 1]) and the value range.

Written by hand with the ``flatbuffers`` builder because the library that writes it
(``tflite-support``) requires protobuf < 4, which the LiteRT converter stack here cannot share;
the field slots below are metadata_schema.fbs's (TensorFlow Lite Support, schema version 1), and
only what an image-to-image model needs is written. Every feature used is in parser version 1.0.0.
"""

from __future__ import annotations

FIELD_NAME = "TFLITE_METADATA"  # the name of the model's metadata entry
FILE_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"
COLOR_SPACE_RGB = 1            # ColorSpaceType.RGB
CONTENT_IMAGE_PROPERTIES = 2   # ContentProperties.ImageProperties
UNIT_NORMALIZATION = 1         # ProcessUnitOptions.NormalizationOptions
MEAN, STD = 127.5, 127.5       # value = (pixel - MEAN) / STD: [0, 255] -> [-1, 1]


def _floats(builder, values: list[float]) -> int:
    builder.StartVector(4, len(values), 4)
    for v in reversed(values):
        builder.PrependFloat32(v)
    return builder.EndVector()


def _offsets(builder, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for o in reversed(offsets):
        builder.PrependUOffsetTRelative(o)
    return builder.EndVector()


def _image_tensor(builder, name: str, description: str) -> int:
    """TensorMetadata of an RGB image tensor normalised with MEAN and STD (its values in [-1, 1])."""
    name_off, description_off = builder.CreateString(name), builder.CreateString(description)
    builder.StartObject(2)  # ImageProperties: color_space (0), default_size (1)
    builder.PrependInt8Slot(0, COLOR_SPACE_RGB, 0)
    properties = builder.EndObject()
    builder.StartObject(3)  # Content: content_properties_type (0), content_properties (1), range (2)
    builder.PrependUint8Slot(0, CONTENT_IMAGE_PROPERTIES, 0)
    builder.PrependUOffsetTRelativeSlot(1, properties, 0)
    content = builder.EndObject()
    mean, std = _floats(builder, [MEAN]), _floats(builder, [STD])
    builder.StartObject(2)  # NormalizationOptions: mean (0), std (1)
    builder.PrependUOffsetTRelativeSlot(0, mean, 0)
    builder.PrependUOffsetTRelativeSlot(1, std, 0)
    normalization = builder.EndObject()
    builder.StartObject(2)  # ProcessUnit: options_type (0), options (1)
    builder.PrependUint8Slot(0, UNIT_NORMALIZATION, 0)
    builder.PrependUOffsetTRelativeSlot(1, normalization, 0)
    unit = builder.EndObject()
    units = _offsets(builder, [unit])
    high, low = _floats(builder, [1.0]), _floats(builder, [-1.0])
    builder.StartObject(2)  # Stats: max (0), min (1): the normalised values' range
    builder.PrependUOffsetTRelativeSlot(0, high, 0)
    builder.PrependUOffsetTRelativeSlot(1, low, 0)
    stats = builder.EndObject()
    builder.StartObject(7)  # TensorMetadata: name (0), description (1), content (3), process_units (4), stats (5)
    builder.PrependUOffsetTRelativeSlot(0, name_off, 0)
    builder.PrependUOffsetTRelativeSlot(1, description_off, 0)
    builder.PrependUOffsetTRelativeSlot(3, content, 0)
    builder.PrependUOffsetTRelativeSlot(4, units, 0)
    builder.PrependUOffsetTRelativeSlot(5, stats, 0)
    return builder.EndObject()


def image_to_image_metadata(contract: dict[str, str], input_name: str, output_name: str) -> bytes:
    """The ``TFLITE_METADATA`` buffer for a crd-edge image-to-image model (one input, one output)."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    size, layout = contract.get("input_size", "?"), contract.get("layout", "NHWC")
    inputs = _offsets(builder, [_image_tensor(
        builder, input_name, f"RGB image, {size}, {layout}: value = (pixel - {MEAN}) / {STD}")])
    outputs = _offsets(builder, [_image_tensor(
        builder, output_name, f"RGB image, {size}, {layout}: pixel = value * {STD} + {MEAN}, clipped to 0-255")])
    builder.StartObject(10)  # SubGraphMetadata: input_tensor_metadata (2), output_tensor_metadata (3)
    builder.PrependUOffsetTRelativeSlot(2, inputs, 0)
    builder.PrependUOffsetTRelativeSlot(3, outputs, 0)
    subgraph = builder.EndObject()
    subgraphs = _offsets(builder, [subgraph])
    strings = [builder.CreateString(text) for text in (
        f"crd-edge {contract.get('role', 'student')}",
        f"Image-to-image generator distilled by crd-edge ({contract.get('precision', '')}); RGB in, RGB out.",
        contract.get("crd_edge_version", ""), MIN_PARSER_VERSION)]
    name, description, version, parser = strings
    builder.StartObject(8)  # ModelMetadata: name (0), description (1), version (2), subgraph_metadata (3),
    builder.PrependUOffsetTRelativeSlot(0, name, 0)  # ... min_parser_version (7)
    builder.PrependUOffsetTRelativeSlot(1, description, 0)
    builder.PrependUOffsetTRelativeSlot(2, version, 0)
    builder.PrependUOffsetTRelativeSlot(3, subgraphs, 0)
    builder.PrependUOffsetTRelativeSlot(7, parser, 0)
    builder.Finish(builder.EndObject(), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())
