"""Per-request traces: the three formats parse to sorted arrivals and token arrays; bad rows name
their line and problem, as simulator/trace.py does."""

import pytest

from simulator.request_trace import is_request_trace, parse_request_trace, read_request_trace
from simulator.trace import TraceError


def test_azure_rows_are_seconds_since_the_first_whole_second():
    trace = parse_request_trace(
        [
            "TIMESTAMP,ContextTokens,GeneratedTokens\n",
            "2023-11-16 18:15:46.6805900,374,44\n",
            "2023-11-16 18:15:50.9951690,396,109\n",
        ],
        "az.csv",
    )
    assert trace.start_seconds == 1700158546.0
    assert trace.arrival_s.tolist() == pytest.approx([0.68059, 4.995169])
    assert trace.input_tokens.tolist() == [374, 396]
    assert trace.output_tokens.tolist() == [44, 109]
    assert trace.arrivals_per_second().tolist() == [1, 0, 0, 0, 1]


def test_mooncake_milliseconds_and_extra_keys():
    lines = [
        '{"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1]}\n',
        '{"timestamp": 3000, "input_length": 10, "output_length": 2}\n',
    ]
    trace = parse_request_trace(lines, "m.jsonl")
    assert trace.arrival_s.tolist() == [0.0, 3.0]
    assert trace.input_tokens.tolist() == [6758, 10]


def test_plain_format_and_header_detection(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("arrival_s,input_tokens,output_tokens\n10.5,100,20\n11,5,1\n", encoding="utf-8")
    assert is_request_trace(path)
    trace = read_request_trace(path)
    assert trace.start_seconds == 10.0
    assert trace.arrival_s.tolist() == [0.5, 1.0]
    rate_trace = tmp_path / "r.csv"
    rate_trace.write_text("timestamp_s,requests\n0,1\n", encoding="utf-8")
    assert not is_request_trace(rate_trace)


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("arrival_s,input_tokens,output_tokens\n", 1, "no requests"),
        ("time,in,out\n1,2,3\n", 1, "header must be"),
        ("arrival_s,input_tokens,output_tokens\n1,2\n", 2, "expected 3 comma-separated fields"),
        ("arrival_s,input_tokens,output_tokens\nx,2,3\n", 2, "arrival_s 'x' is not a number"),
        ("arrival_s,input_tokens,output_tokens\n-1,2,3\n", 2, "finite number >= 0"),
        ("arrival_s,input_tokens,output_tokens\n1,2.5,3\n", 2, "input_tokens '2.5' is not a whole number"),
        ("arrival_s,input_tokens,output_tokens\n1,2,0\n", 2, "output_tokens 0 is out of range"),
        ("arrival_s,input_tokens,output_tokens\n5,2,3\n\n4,2,3\n", 4, "before the previous"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n", 2, "is not a time"),
        (
            '{"timestamp": 0, "input_length": 1, "output_length": 1}\n{"timestamp": 1}\n',
            2,
            "missing input_length",
        ),
        ('{"timestamp": 0, "input_length": 1, "output_length": 1}\n[1]\n', 2, "not a JSON object"),
    ],
)
def test_bad_rows_name_their_line(tmp_path, text, line, problem):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TraceError) as raised:
        read_request_trace(path)
    assert raised.value.line == line
    assert problem in raised.value.problem
    assert str(raised.value).startswith(f"{path}:{line}: ")
