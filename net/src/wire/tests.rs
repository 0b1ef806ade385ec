//! Codec tests: round trips, every refusal, and no panic on any bytes.

use proptest::prelude::*;

use super::*;
use crate::{BucketName, ObjectKey, Version, WriteType};

fn object(key: &str) -> ObjectRef {
    ObjectRef {
        bucket: BucketName::new("stage-1").unwrap(),
        key: ObjectKey::new(key).unwrap(),
    }
}

fn put(key: &str) -> Request {
    Request::Put(PutHeader {
        object: object(key),
        len: 1 << 20,
        crc: Some(0xdead_beef),
        frame_bytes: 65536,
        replication: Replication::new(WriteType::AsyncThrough, 2, 2).unwrap(),
        forwarded: None,
        metadata: Metadata::new(vec![
            (
                "content-type".into(),
                "application/vnd.apache.parquet".into(),
            ),
            ("x-amz-meta-stage".into(), "2".into()),
        ])
        .unwrap(),
        condition: Some(WriteCondition::Matches(Digest::of_bytes(b"seven"))),
    })
}

/// Metadata of exactly [`MAX_METADATA_BYTES`].
fn largest_metadata() -> Metadata {
    let name = "x-amz-meta-big".to_owned();
    let value = "v".repeat(crate::wire::MAX_METADATA_BYTES - name.len());
    Metadata::new(vec![(name, value)]).unwrap()
}

fn with_header_bytes(header: &[u8]) -> Vec<u8> {
    super::frame_header(header)
}

/// One of every request kind: the round-trip test and the fuzz seeds.
fn sample_requests() -> Vec<Request> {
    vec![
        put("a/b.parquet"),
        Request::Get {
            object: object("k"),
            range: Some(ByteRange::Span(5..10)),
            under_store: false,
        },
        Request::Get {
            object: object("k"),
            range: Some(ByteRange::From(5)),
            under_store: false,
        },
        Request::Get {
            object: object("k"),
            range: Some(ByteRange::Last(8)),
            under_store: false,
        },
        Request::Get {
            object: object("k"),
            range: None,
            under_store: true,
        },
        Request::Head {
            object: object("k"),
            under_store: true,
        },
        Request::Delete {
            object: object("k"),
            replication: Replication::new(WriteType::MustCache, 3, 1).unwrap(),
            forwarded: Some(Forwarded {
                version: Version(9),
                primary: 2,
            }),
        },
        Request::List {
            bucket: BucketName::new("stage-1").unwrap(),
            prefix: "a/".into(),
            start_after: Some("a/b".into()),
            max_keys: 1000,
        },
        Request::Status,
        Request::Persisted {
            object: object("k"),
            version: Version(7),
        },
        Request::Witness {
            object: object("k"),
            version: Version(8),
            holders: vec![0, 2],
        },
        compose(".fdw-multipart/u/", &[1, 2, 3, 7, 9, 10]),
    ]
}

fn compose(prefix: &str, numbers: &[u16]) -> Request {
    Request::Compose(ComposeHeader {
        object: object("out.parquet"),
        parts: NumberedParts::new(prefix, numbers).unwrap(),
        len: 6 << 20,
        crc: 0xfeed,
        replication: Replication::new(WriteType::AsyncThrough, 3, 2).unwrap(),
        forwarded: Some(Forwarded {
            version: Version(10),
            primary: 1,
        }),
        metadata: Metadata::empty(),
        condition: Some(WriteCondition::Absent),
    })
}

#[test]
fn numbered_parts_are_runs_of_five_digit_keys() {
    let parts = NumberedParts::new("p/", &[1, 2, 3, 7, 10_000]).unwrap();
    assert_eq!(parts.keys().count(), 5);
    let keys: Vec<String> = parts.keys().map(|k| k.as_str().to_owned()).collect();
    assert_eq!(
        keys,
        ["p/00001", "p/00002", "p/00003", "p/00007", "p/10000"]
    );
    // The largest compose the limits allow, with the most metadata, fits one header.
    let every_other: Vec<u16> = (0..MAX_COMPOSE_RUNS as u16).map(|i| 2 * i + 1).collect();
    let longest = "k".repeat(crate::MAX_KEY_BYTES - 5);
    let request = Request::Compose(ComposeHeader {
        object: object(&"o".repeat(crate::MAX_KEY_BYTES)),
        parts: NumberedParts::new(longest, &every_other).unwrap(),
        len: MAX_OBJECT_BYTES,
        crc: 1,
        replication: Replication::new(WriteType::AsyncThrough, 3, 2).unwrap(),
        forwarded: None,
        metadata: largest_metadata(),
        condition: Some(WriteCondition::NotMatches(Digest::of_parts(
            [Digest::default(); 3],
        ))),
    });
    assert_eq!(decode_request(&request.encode()).unwrap(), request);
}

#[test]
fn parts_that_break_a_rule_are_refused_by_sender_and_decoder_alike() {
    let too_many: Vec<u16> = (0..=MAX_COMPOSE_RUNS as u16).map(|i| 2 * i + 1).collect();
    let long = "k".repeat(crate::MAX_KEY_BYTES - 4);
    let cases: [(&str, &[u16], &str); 6] = [
        ("p/", &[], "no parts"),
        ("p/", &[0, 1], "MAX_PART_NUMBER"),
        ("p/", &[3, 2], "not ascending"),
        ("p/", &[2, 2], "not ascending"),
        ("p/", &[MAX_PART_NUMBER + 1], "MAX_PART_NUMBER"),
        ("p/", &too_many, "MAX_COMPOSE_RUNS"),
    ];
    for (prefix, numbers, why) in cases {
        let err = NumberedParts::new(prefix, numbers).unwrap_err();
        assert!(err.to_string().contains(why), "{numbers:?}: {err}");
    }
    assert!(matches!(
        NumberedParts::new(long.as_str(), &[1]),
        Err(WireError::InvalidName(_))
    ));
    // The decoder applies the same checks to what a peer sent.
    for (prefix, runs) in [
        ("p/", vec![]),
        #[allow(clippy::reversed_empty_ranges)] // the point: a run that ends before it starts
        ("p/", vec![5..=4]),
        ("p/", vec![1..=3, 3..=4]),
        ("p/", vec![1..=MAX_PART_NUMBER + 1]),
        (long.as_str(), vec![1..=1]),
    ] {
        let request = Request::Compose(ComposeHeader {
            object: object("k"),
            parts: NumberedParts::unchecked(prefix, runs.clone()),
            len: 1,
            crc: 0,
            replication: Replication::new(WriteType::AsyncThrough, 1, 1).unwrap(),
            forwarded: None,
            metadata: Metadata::empty(),
            condition: None,
        });
        assert!(
            matches!(
                decode_request(&request.encode()),
                Err(WireError::InvalidParts(_) | WireError::InvalidName(_))
            ),
            "{runs:?} accepted"
        );
    }
}

#[test]
fn a_witness_over_the_holder_limit_is_refused_naming_it() {
    let witness = Request::Witness {
        object: object("k"),
        version: Version(8),
        holders: (0..=u16::from(crate::wire::MAX_REPLICAS)).collect(),
    };
    let err = decode_request(&witness.encode()).unwrap_err();
    assert_eq!(
        err,
        WireError::TooManyHolders(usize::from(crate::wire::MAX_REPLICAS) + 1)
    );
    assert!(err.to_string().contains("MAX_REPLICAS"));
}

#[test]
fn every_request_round_trips() {
    for request in sample_requests() {
        assert_eq!(decode_request(&request.encode()).unwrap(), request);
    }
}

/// One of every response kind: the round-trip test and the fuzz seeds.
fn sample_responses() -> Vec<Response> {
    vec![
        Response::Stored {
            version: Version(3),
            crc: 1,
            digest: Some(Digest::of_bytes(b"stored")),
            replicas: vec![0, 2],
        },
        Response::Object(ObjectInfo {
            object: object("k"),
            version: Version(3),
            len: 10,
            crc: 2,
            object_len: 25,
            offset: 15,
            frame_bytes: 4096,
            write_type: WriteType::CacheThrough,
            persisted: false,
            persist_failure: Some("PutObject: SlowDown".into()),
            replicas: vec![1],
            metadata: largest_metadata(),
            digest: Digest::of_parts([Digest::of_bytes(b"part"); 2]),
        }),
        Response::Listing {
            entries: vec![
                ListEntry {
                    key: ObjectKey::new("x").unwrap(),
                    version: Version(1),
                    len: 0,
                    digest: Digest::of_bytes(b""),
                    deleted: false,
                },
                ListEntry {
                    key: ObjectKey::new("y").unwrap(),
                    version: Version(2),
                    len: 0,
                    digest: Digest::default(),
                    deleted: true,
                },
            ],
            next_start_after: Some("y".into()),
        },
        Response::Status(NodeStatus {
            node: 2,
            backing: "hugetlb".into(),
            frame_bytes: 65536,
            pool_bytes: 1,
            pinned_bytes: 2,
            evictable_bytes: 3,
            backlog_objects: 4,
            backlog_bytes: 5,
            backlog_oldest_ms: 6,
            uploads_in_flight: 7,
            uploads_done: 8,
            upload_failures: 9,
            last_upload_failure: Some("InternalError".into()),
            members: vec![
                MemberHealth {
                    id: 0,
                    alive: true,
                    since_ms: 10,
                },
                MemberHealth {
                    id: 1,
                    alive: false,
                    since_ms: 2500,
                },
            ],
            incarnation: 11,
            recovery: RecoveryStatus {
                taken_over: 12,
                copies_made: 13,
                copy_bytes: 14,
                under_replicated: 15,
                losses_seen: 16,
                losses_restored: 17,
                lost_objects: 18,
            },
        }),
        Response::error(ErrorKind::ClusterFull, "memory full"),
    ]
}

#[test]
fn byte_ranges_resolve_as_http_ranges_do() {
    let cases = [
        (ByteRange::Span(100..200), 1000, Some(100..200)),
        (ByteRange::Span(5..2000), 1000, Some(5..1000)),
        (ByteRange::Span(999..1000), 1000, Some(999..1000)),
        (ByteRange::Span(1000..1001), 1000, None),
        (ByteRange::Span(3..3), 10, Some(3..3)),
        (ByteRange::From(990), 1000, Some(990..1000)),
        (ByteRange::From(1000), 1000, None),
        (ByteRange::Last(8), 1000, Some(992..1000)),
        (ByteRange::Last(5000), 1000, Some(0..1000)),
        (ByteRange::Last(0), 1000, None),
        (ByteRange::Last(8), 0, None),
        (ByteRange::From(0), 0, None),
    ];
    for (range, len, want) in cases {
        assert_eq!(range.resolve(len), want, "{range} of {len} bytes");
    }
}

#[test]
fn ranges_that_cannot_be_are_refused_by_the_decoder() {
    #[allow(clippy::reversed_empty_ranges)] // what a hostile peer sends
    let backwards = Request::Get {
        object: object("k"),
        range: Some(ByteRange::Span(10..5)),
        under_store: false,
    };
    assert_eq!(
        decode_request(&backwards.encode()),
        Err(WireError::InvalidRange { start: 10, end: 5 })
    );
    // An answer claiming bytes past the end of its object.
    let Response::Object(mut info) = sample_responses().swap_remove(1) else {
        unreachable!("the second sample is an object")
    };
    info.offset = 20;
    let err = decode_response(&Response::Object(info).encode()).unwrap_err();
    assert_eq!(
        err,
        WireError::RangePastEnd {
            offset: 20,
            len: 10,
            object_len: 25
        }
    );
    assert!(err.to_string().contains("past the object's 25 bytes"));
}

#[test]
fn every_response_round_trips() {
    for response in sample_responses() {
        assert_eq!(decode_response(&response.encode()).unwrap(), response);
    }
}

#[test]
fn the_preamble_is_checked_first() {
    let good = put("k").encode();
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(matches!(
        decode_request(&bad_magic),
        Err(WireError::BadMagic(_))
    ));

    let mut newer = good.clone();
    let next = PROTOCOL_VERSION + 1;
    newer[4..6].copy_from_slice(&next.to_le_bytes());
    let err = decode_request(&newer).unwrap_err();
    assert_eq!(err, WireError::UnsupportedVersion { got: next });
    assert!(
        err.to_string()
            .contains(&format!("speaks version {PROTOCOL_VERSION}"))
    );

    let mut huge = good.clone();
    huge[6..10].copy_from_slice(&(MAX_HEADER_BYTES as u32 + 1).to_le_bytes());
    let err = decode_request(&huge).unwrap_err();
    assert!(err.to_string().contains("MAX_HEADER_BYTES"), "{err}");

    assert!(matches!(
        decode_request(&good[..good.len() - 1]),
        Err(WireError::Truncated { .. })
    ));
    assert!(matches!(
        decode_request(&good[..3]),
        Err(WireError::Truncated { .. })
    ));
}

/// Builds a put whose names bypass the typed constructors, as a hostile peer would.
fn raw_put(bucket: &[u8], key: &[u8], replicas: u8, quorum: u8, write_type: u8) -> Vec<u8> {
    let raw = message::tests_support::raw_put(bucket, key, replicas, quorum, write_type);
    with_header_bytes(&raw)
}

#[test]
fn fields_are_validated_with_clear_errors() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (raw_put(b"stage-1", b"", 2, 2, 1), "object key is empty"),
        (raw_put(b"stage-1", &[b'k'; 1025], 2, 2, 1), "MAX_KEY_BYTES"),
        (
            raw_put(b"stage-1", &[0xff, 0xfe], 2, 2, 1),
            "object key is not valid UTF-8",
        ),
        (raw_put(b"Bad_Bucket", b"k", 2, 2, 1), "bucket name"),
        (raw_put(b"stage-1", b"k", 2, 3, 1), "MAX_REPLICAS"),
        (raw_put(b"stage-1", b"k", 2, 0, 1), "quorum 0"),
        (raw_put(b"stage-1", b"k", 9, 2, 1), "MAX_REPLICAS"),
        (
            raw_put(b"stage-1", b"k", 2, 2, 9),
            "unknown write type code 9",
        ),
    ];
    for (bytes, needle) in cases {
        let err = decode_request(&bytes).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
    }
}

#[test]
fn error_messages_are_bounded() {
    let Response::Error { message, .. } = Response::error(ErrorKind::Internal, "é".repeat(5000))
    else {
        unreachable!()
    };
    assert!(message.len() <= MAX_ERROR_MESSAGE_BYTES);
}

proptest! {
    /// No byte string makes the decoders panic; whatever they accept re-encodes to an
    /// equal value.
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let bytes = with_header_bytes(&body);
        if let Ok(request) = decode_request(&bytes) {
            prop_assert_eq!(decode_request(&request.encode()).unwrap(), request);
        }
        if let Ok(response) = decode_response(&bytes) {
            prop_assert_eq!(decode_response(&response.encode()).unwrap(), response);
        }
        let _ = decode_request(&body);
    }

    /// Flipping any byte of a valid header gives a valid request or a clean error.
    #[test]
    fn corrupted_headers_never_panic(at in any::<prop::sample::Index>(), xor in 1u8..) {
        let mut bytes = put("some/key").encode();
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        let _ = decode_request(&bytes);
    }
}

/// Writes one encoded message of every kind into `$FDW_WRITE_FUZZ_SEEDS`, as a starting
/// corpus for the fuzzer: `FDW_WRITE_FUZZ_SEEDS=fuzz/seeds/wire_header cargo test -p fdw-net seeds`.
#[test]
fn seeds() {
    let Ok(dir) = std::env::var("FDW_WRITE_FUZZ_SEEDS") else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    let requests = sample_requests().into_iter().map(|r| r.encode());
    let messages: Vec<Vec<u8>> = requests
        .chain(sample_responses().iter().map(Response::encode))
        .collect();
    for (i, message) in messages.iter().enumerate() {
        std::fs::write(format!("{dir}/seed-{i}"), message).unwrap();
    }
}

#[test]
fn a_status_over_the_member_limit_is_refused_naming_it() {
    let members = (0..=MAX_STATUS_MEMBERS as u16)
        .map(|id| MemberHealth {
            id,
            alive: true,
            since_ms: 0,
        })
        .collect();
    let status = Response::Status(NodeStatus {
        frame_bytes: 65536,
        members,
        ..Default::default()
    });
    let err = decode_response(&status.encode()).unwrap_err();
    assert_eq!(err, WireError::TooManyMembers(MAX_STATUS_MEMBERS + 1));
    assert!(err.to_string().contains("MAX_STATUS_MEMBERS"));
}

#[test]
fn frame_crcs_combine_into_the_crc_of_the_whole() {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
    for len in [0, 1, 4095, 4096, 4097, 10_000] {
        let (crcs, whole) = frame_crcs(&data[..len], 4096);
        assert_eq!(whole, crc32fast::hash(&data[..len]), "{len} bytes");
        let each: Vec<u32> = data[..len].chunks(4096).map(crc32fast::hash).collect();
        assert_eq!(crcs, each, "{len} bytes");
    }
}

fn entry(key: String, version: u64) -> ListEntry {
    ListEntry {
        key: ObjectKey::new(key).unwrap(),
        version: Version(version),
        len: version,
        // The widest digest: a part count of five digits.
        digest: Digest::from_etag(&format!("{}-{MAX_PART_NUMBER}", "f".repeat(32))).unwrap(),
        deleted: version.is_multiple_of(2),
    }
}

#[test]
fn listing_pages_stay_under_their_budget_and_say_where_they_resume() {
    // Keys of every length up to the limit: the bound holds for each, and a page of
    // the longest keys stops before its budget, resuming after its last key.
    for key_bytes in [8, 9, 100, 1000, crate::MAX_KEY_BYTES] {
        let keys: Vec<ListEntry> = (0..MAX_LIST_KEYS as u64 + 5)
            .map(|i| entry(format!("{i:08}{}", "k".repeat(key_bytes - 8)), i))
            .collect();
        let page = Response::listing(keys.clone(), MAX_LIST_KEYS);
        let Response::Listing {
            entries,
            next_start_after,
        } = &page
        else {
            unreachable!()
        };
        let used: usize = entries
            .iter()
            .map(|e| list_entry_bytes(e.key.as_str().len()))
            .sum();
        let encoded = page.encode();
        assert!(
            encoded.len() <= used + 2 * crate::MAX_KEY_BYTES + 256,
            "{key_bytes}-byte keys: {} encoded, {used} budgeted",
            encoded.len()
        );
        assert!(used <= MAX_LIST_PAGE_BYTES);
        assert!(encoded.len() <= MAX_RESPONSE_HEADER_BYTES);
        assert!(entries.len() <= MAX_LIST_KEYS as usize);
        assert_eq!(entries[..], keys[..entries.len()], "a prefix, in order");
        assert_eq!(
            next_start_after.as_deref(),
            Some(entries.last().unwrap().key.as_str()),
            "more keys remain, so the page says where it resumes"
        );
        assert_eq!(decode_response(&encoded).unwrap(), page);
    }
    // Everything fits: no resume point.
    let few: Vec<ListEntry> = (0..3).map(|i| entry(format!("k{i}"), i)).collect();
    assert_eq!(
        Response::listing(few.clone(), 3),
        Response::Listing {
            entries: few,
            next_start_after: None,
        }
    );
}

#[test]
fn a_listing_out_of_order_is_refused() {
    let listing = |keys: &[&str], next: Option<&str>| Response::Listing {
        entries: keys.iter().map(|k| entry((*k).into(), 1)).collect(),
        next_start_after: next.map(str::to_owned),
    };
    for (keys, next) in [
        (&["b", "a"][..], None),
        (&["a", "a"][..], None),
        (&["a", "c"][..], Some("b")),
    ] {
        let err = decode_response(&listing(keys, next).encode()).unwrap_err();
        assert!(matches!(err, WireError::ListingOutOfOrder(_)), "{err}");
    }
    decode_response(&listing(&["a", "c"], Some("c")).encode()).unwrap();
}

#[test]
fn each_direction_has_its_own_header_limit() {
    let mut preamble = [0u8; PREAMBLE_BYTES];
    preamble[..4].copy_from_slice(&MAGIC);
    preamble[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    let with_len = |len: usize| {
        let mut p = preamble;
        p[6..10].copy_from_slice(&(len as u32).to_le_bytes());
        p
    };
    let big_response = MAX_HEADER_BYTES + 1;
    let err = decode_preamble(&with_len(big_response), Direction::Request).unwrap_err();
    assert!(err.to_string().contains("MAX_HEADER_BYTES"), "{err}");
    assert_eq!(
        decode_preamble(&with_len(big_response), Direction::Response),
        Ok(big_response)
    );
    let err = decode_preamble(
        &with_len(MAX_RESPONSE_HEADER_BYTES + 1),
        Direction::Response,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("MAX_RESPONSE_HEADER_BYTES"),
        "{err}"
    );
}
