//! Who may read an upload: its uploader, and the members of a thread that
//! holds a live message carrying it. Everyone else, another company
//! included, gets the same 404 as for an upload that does not exist.

use serde_json::{json, Value};
use uuid::Uuid;

use super::{fetch, noise, png, upload};
use crate::support::{spawn_app, TestApp, TestUser, WsClient};

async fn status(app: &TestApp, user: &TestUser, path: &str) -> u16 {
    fetch(&app.base, &user.token, path, &[]).await.status
}

/// Sends a message carrying `upload_id`; the whole reply frame.
async fn send_upload(ws: &mut WsClient, thread: Uuid, kind: &str, upload_id: &str) -> Value {
    ws.request(
        "chat:send",
        json!({"thread_id": thread, "client_msg_id": Uuid::new_v4(), "type": kind,
               "metadata": {"upload_id": upload_id}}),
    )
    .await
}

#[actix_web::test]
async fn a_sent_upload_carries_its_metadata_to_every_member() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let up = upload(
        &app.base,
        &ann.token,
        "cat.png",
        Some("image/png"),
        png(640, 480),
    )
    .await;
    let id = up.id();
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;

    let reply = ann_ws
        .request(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": Uuid::new_v4(), "type": "image",
                   "body": "look", "metadata": {"upload_id": id}}),
        )
        .await;
    assert_eq!(reply["event"], "chat:ack", "{reply}");
    let message = reply["data"]["message"].clone();
    let expected = json!({
        "upload_id": id,
        "url": format!("/api/uploads/{id}"),
        "name": "cat.png",
        "size": up.body["size"],
        "mime": "image/png",
        "thumbnail_url": format!("/api/uploads/{id}/thumbnail"),
    });
    assert_eq!(message["metadata"], expected, "{message}");
    assert_eq!(message["body"], "look");
    let seen = bob_ws.next_event("chat:message").await;
    assert_eq!(seen["message"], message);

    // History shows the same; forwarding the metadata as received works,
    // and one upload may be in several messages.
    let page = app
        .get(&format!("/api/threads/{thread}/messages"), &bob.token)
        .await;
    assert_eq!(page.body["messages"][0]["metadata"], expected);
    let forward = ann_ws
        .request(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": Uuid::new_v4(), "type": "file",
                   "metadata": expected}),
        )
        .await;
    assert_eq!(forward["event"], "chat:ack", "{forward}");
    assert_eq!(forward["data"]["message"]["metadata"], expected);

    // A file upload has a null thumbnail_url.
    let doc = upload(
        &app.base,
        &ann.token,
        "notes.txt",
        Some("text/plain"),
        b"notes".to_vec(),
    )
    .await;
    let reply = send_upload(&mut ann_ws, thread, "file", &doc.id()).await;
    assert_eq!(
        reply["data"]["message"]["metadata"]["thumbnail_url"],
        Value::Null,
        "{reply}"
    );
    assert_eq!(reply["data"]["message"]["metadata"]["size"], 5);
}

#[actix_web::test]
async fn only_your_own_upload_can_be_sent() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let anns = upload(&app.base, &ann.token, "a.txt", None, b"ann's".to_vec())
        .await
        .id();
    let mut bob_ws = app.connect(bob).await;
    let mut ann_ws = app.connect(ann).await;

    for upload_id in [anns.clone(), Uuid::new_v4().to_string()] {
        let reply = send_upload(&mut bob_ws, thread, "file", &upload_id).await;
        assert_eq!(reply["event"], "chat:error", "{reply}");
        assert_eq!(reply["data"]["code"], "bad_request", "{reply}");
    }
    ann_ws.assert_no_event("chat:message").await;
    assert_eq!(
        status(&app, bob, &format!("/api/uploads/{anns}")).await,
        404
    );
    let mut db = app.db().await;
    assert_eq!(db.count("SELECT count(*) FROM messages").await, 0);

    let reply = bob_ws
        .request(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": Uuid::new_v4(), "type": "file",
                   "metadata": {"upload_id": "not-a-uuid"}}),
        )
        .await;
    assert_eq!(reply["data"]["code"], "bad_request", "{reply}");
}

#[actix_web::test]
async fn readers_are_the_uploader_and_members_of_a_thread_carrying_it() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, cid) = (&users[0], &users[1], &users[2]);
    let other_company = app.company().await;
    let eve = app.user(other_company).await;
    let thread = app.group(&[ann, bob]).await;
    let second = app.group(&[ann, cid]).await;
    let id = upload(
        &app.base,
        &ann.token,
        "p.png",
        Some("image/png"),
        png(400, 400),
    )
    .await
    .id();
    let file = format!("/api/uploads/{id}");
    let thumb = format!("/api/uploads/{id}/thumbnail");

    for path in [&file, &thumb] {
        assert_eq!(status(&app, ann, path).await, 200, "the uploader");
        assert_eq!(status(&app, bob, path).await, 404, "not sent anywhere yet");
        assert_eq!(status(&app, &eve, path).await, 404, "another company");
    }
    let missing = format!("/api/uploads/{}", Uuid::new_v4());
    assert_eq!(status(&app, ann, &missing).await, 404);
    assert_eq!(status(&app, ann, "/api/uploads/nope").await, 400);

    let mut ann_ws = app.connect(ann).await;
    let first = send_upload(&mut ann_ws, thread, "image", &id).await;
    let first_id = first["data"]["message"]["id"].as_str().unwrap().to_string();
    for path in [&file, &thumb] {
        assert_eq!(status(&app, bob, path).await, 200, "a member of the thread");
        assert_eq!(
            status(&app, cid, path).await,
            404,
            "not a member of that thread"
        );
        assert_eq!(status(&app, &eve, path).await, 404);
    }

    // In a second thread too: deleting the first message keeps the file
    // for the second thread's members, and takes it from the first's.
    send_upload(&mut ann_ws, second, "image", &id).await;
    assert_eq!(status(&app, cid, &file).await, 200);
    let deleted = app
        .delete(&format!("/api/messages/{first_id}"), &ann.token)
        .await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    assert_eq!(
        status(&app, bob, &file).await,
        404,
        "its only message is deleted"
    );
    assert_eq!(
        status(&app, cid, &file).await,
        200,
        "another message still carries it"
    );
    assert_eq!(status(&app, ann, &file).await, 200, "still the uploader's");

    // Leaving the thread ends access too.
    let left = app
        .delete(&format!("/api/threads/{second}/members/me"), &cid.token)
        .await;
    assert_eq!(left.status, 204, "{left:?}");
    assert_eq!(status(&app, cid, &file).await, 404);

    let fetched = fetch(&app.base, &ann.token, &file, &[]).await;
    assert_eq!(
        fetched.status, 200,
        "the bytes are never lost with a message"
    );
    let mut db = app.db().await;
    assert_eq!(db.count("SELECT count(*) FROM uploads").await, 1);
}

#[actix_web::test]
async fn a_bigger_upload_streams_through_several_parts() {
    let app = spawn_app().await;
    let ann = app.users(1).await.remove(0);
    // Over the 5 MiB part size: written as a multipart upload.
    let bytes = noise(11 * 1024 * 1024 + 17);
    let up = upload(&app.base, &ann.token, "big.bin", None, bytes.clone()).await;
    assert_eq!(up.status, 201, "{}", up.body);
    assert_eq!(up.body["sha256"], super::sha256_hex(&bytes));
    let got = fetch(
        &app.base,
        &ann.token,
        &format!("/api/uploads/{}", up.id()),
        &[],
    )
    .await;
    assert!(got.bytes == bytes);
    let part = fetch(
        &app.base,
        &ann.token,
        &format!("/api/uploads/{}", up.id()),
        &[("range", "bytes=6000000-6000009")],
    )
    .await;
    assert_eq!(part.bytes, bytes[6_000_000..6_000_010]);
}
