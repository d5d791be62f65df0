"""Wire format between the gateway and the recorder (protobuf package `slicewire.v1`, issue 3)."""

__all__: list[str] = []
