"""bench.throughput's raw figure is the worker's own encoding call, timed alone."""

from __future__ import annotations

from bench.throughput import raw_throughput, texts


def test_raw_text_throughput_times_the_worker_s_encoding_of_every_payload(monkeypatch) -> None:
    from ctax.embedding.space import SharedSpace

    seen: list[int] = []
    encode_messages = SharedSpace.encode_messages

    def counted(self, texts=(), images=(), message=128):  # type: ignore[no-untyped-def]
        seen.append(len(texts))
        assert message == 4  # messages of the worker's batch size
        return encode_messages(self, texts=texts, images=images, message=message)

    monkeypatch.setattr(SharedSpace, "encode_messages", counted)
    payloads = texts(10, seed=3)
    rate = raw_throughput("text", payloads, 4)
    assert seen == [4, 10]  # a warm-up message, then every payload in one timed call
    assert rate > 0
