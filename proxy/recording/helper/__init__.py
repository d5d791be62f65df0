"""The shipping helper: a child process of the gateway (`python -m proxy.recording.helper`), never
imported by the gateway itself. It turns the records the gateway hands it into span rows (`_spans`),
redacts them, packs them as SpanBatches and sends them to the recorder over gRPC, spooling to disk
while the recorder is away (`_shipper`)."""
