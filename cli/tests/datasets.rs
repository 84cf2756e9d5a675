//! `medmesh dataset ls` and `dataset view` show a dataset's sealed details to
//! those who open them (the committee and the owner) and "(sealed)" to everyone
//! else, whose node holds the very same record.

mod common;

use common::*;
use medmesh_cli::publish::NodeApi;
use protocol::record::*;
use protocol::seal::{self, DetailsBinding, SeededRng};
use protocol::{Hash32, Record, RecordId};

#[test]
fn dataset_details_show_to_the_owner_and_stay_sealed_to_others() {
    let t = TempDir::new("dataset-details");
    let node_dir = t.0.join("node");
    let (admin, owner, outsider) = (t.0.join("admin"), t.0.join("owner"), t.0.join("outsider"));
    home(&admin, None, &node_dir);
    let root = admin.join("root.cbor");
    home(&owner, Some(&root), &node_dir);
    home(&outsider, Some(&root), &node_dir);
    let node = start_node(&node_dir, &root, &[]);

    // The owner's dataset record, its details sealed to the owner alone (the
    // benchmark, unknown here, would add its committee).
    let keys = medmesh_cli::keys::load(&owner.join("keys")).unwrap();
    let network = medmesh_cli::home::Home { dir: owner.clone() }.network_id().unwrap();
    let benchmark = RecordId::from_bytes([7; 32]);
    let details = SealedDetails {
        details: DatasetDetails {
            name: "st-marys-oncology".into(),
            description: "St Mary's oncology cases".into(),
            location: "London".into(),
            statistics: [("cases".to_string(), protocol::metric::MetricValue::Int(130))]
                .into_iter()
                .collect(),
            num_cases: Some(130),
            name_public: false,
        },
        pseudonym_key: Bytes(vec![3; 32]),
    };
    let binding = DetailsBinding { benchmark, owner: protocol::PublicKey::from(&keys.signing) };
    let sealed =
        seal::seal_details(&details, &[keys.x25519()], binding, &mut SeededRng::new(b"t")).unwrap();
    let record = Record::sign(
        &keys.signing,
        network,
        0,
        None,
        Body::Dataset(Dataset {
            benchmark,
            data_preparator: RecordId::from_bytes([8; 32]),
            prepared_hash: Hash32::of(b"prepared"),
            state: DatasetState::Development,
            public_details: None,
            sealed,
        }),
    )
    .unwrap();
    node.control().submit(&record.bytes).unwrap();

    // The owner reads its details, by the dataset's name too.
    let mine = json(&ok(&owner, &["--json", "dataset", "ls"]));
    assert_eq!(mine[0]["details"]["name"], "st-marys-oncology");
    assert_eq!(mine[0]["details"]["num_cases"], 130);
    let view = json(&ok(&owner, &["--json", "dataset", "view", "st-marys-oncology"]));
    assert_eq!(view["details_readable"], true);
    assert_eq!(view["details"]["location"], "London");

    // The outsider holds the same record and reads none of it.
    let theirs = json(&ok(&outsider, &["--json", "dataset", "ls"]));
    assert_eq!(theirs[0]["dataset"]["id"], mine[0]["dataset"]["id"]);
    assert!(theirs[0]["details"].is_null(), "{theirs}");
    let table = String::from_utf8(ok(&outsider, &["dataset", "ls"]).stdout).unwrap();
    assert!(table.contains("(sealed)") && !table.contains("st-marys"), "{table}");
    // Not even by name; by id it shows the public part only.
    assert!(!medmesh(&outsider, &["dataset", "view", "st-marys-oncology"]).status.success());
    let view = json(&ok(&outsider, &["--json", "dataset", "view", &record.id.to_hex()[..12]]));
    assert_eq!(view["details_readable"], false);
    let text = view.to_string();
    for secret in ["st-marys", "London", "oncology", "num_cases", "statistics"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    // Every dataset command above asked the node's indexed queries, never the whole state.
    assert_eq!(node.state_downloads(), 0, "a command downloaded the whole state");
}
