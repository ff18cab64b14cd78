//! The collector: uploads that no message carries and that nobody made or
//! sent within `uploads.collect_after_s` go, row and bytes; everything
//! else stays.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::{fetch, files_under, png, upload};
use crate::support::spawn_app_with;

#[actix_web::test]
async fn uploads_nothing_carries_are_collected_after_the_grace_period_and_nothing_else() {
    let app = spawn_app_with(|s| {
        s.uploads.collect_after_s = 3600;
        s.uploads.collect_interval_s = 1;
    })
    .await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let up = |name: &'static str| {
        let (base, token) = (app.base.clone(), ann.token.clone());
        async move {
            upload(&base, &token, name, Some("image/png"), png(400, 300))
                .await
                .id()
        }
    };
    let (recent, carried, orphan, uncarried) = (
        up("recent.png").await,
        up("carried.png").await,
        up("orphan.png").await,
        up("uncarried.png").await,
    );
    let mut ws = app.connect(ann).await;
    let mut ids = Vec::new();
    for id in [&carried, &uncarried] {
        let reply = ws
            .request(
                "chat:send",
                json!({"thread_id": thread, "client_msg_id": Uuid::new_v4(), "type": "image",
                       "metadata": {"upload_id": id}}),
            )
            .await;
        assert_eq!(reply["event"], "chat:ack", "{reply}");
        ids.push(reply["data"]["message"]["id"].as_str().unwrap().to_string());
    }
    let deleted = app
        .delete(&format!("/api/messages/{}", ids[1]), &ann.token)
        .await;
    assert_eq!(deleted.status, 200);

    let mut db = app.db().await;
    db.exec(&format!(
        "UPDATE uploads SET last_sent_at = now() - interval '2 hours'
         WHERE id IN ('{carried}', '{orphan}', '{uncarried}')"
    ))
    .await;
    let gone = format!("SELECT count(*) FROM uploads WHERE id IN ('{orphan}', '{uncarried}')");
    let mut waited = Duration::ZERO;
    while db.count(&gone).await > 0 {
        assert!(waited < Duration::from_secs(20), "the collector never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    assert_eq!(db.count("SELECT count(*) FROM uploads").await, 2);
    // Rows go first, then bytes: wait for the bytes too.
    let dir = Path::new(&app.settings.uploads.dir);
    while files_under(dir).len() > 4 {
        assert!(
            waited < Duration::from_secs(20),
            "bytes left: {:?}",
            files_under(dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    let mut left: Vec<String> = files_under(dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut expected = vec![
        recent.clone(),
        recent.clone(),
        carried.clone(),
        carried.clone(),
    ];
    expected.sort();
    assert_eq!(left, expected, "file and thumbnail of the two kept uploads");

    for id in [&recent, &carried] {
        let got = fetch(&app.base, &ann.token, &format!("/api/uploads/{id}"), &[]).await;
        assert_eq!(got.status, 200, "{id} is kept");
    }
    assert_eq!(
        fetch(
            &app.base,
            &bob.token,
            &format!("/api/uploads/{carried}"),
            &[]
        )
        .await
        .status,
        200
    );
    let reply = ws
        .request(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": Uuid::new_v4(), "type": "image",
                   "metadata": {"upload_id": orphan}}),
        )
        .await;
    assert_eq!(
        reply["data"]["code"], "bad_request",
        "a collected upload is gone: {reply}"
    );
}
