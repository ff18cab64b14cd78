// Diesel's view of the tables in migrations/. Kept by hand to match them
// (`diesel print-schema` with the CLI would write the same).

diesel::table! {
    companies (id) {
        id -> Uuid,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        company_id -> Uuid,
        display_name -> Text,
        created_at -> Timestamptz,
        external_id -> Nullable<Text>,
        deactivated_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
        tokens_valid_after -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    threads (id) {
        id -> Uuid,
        company_id -> Uuid,
        kind -> Text,
        title -> Nullable<Text>,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        last_seq -> Int8,
        direct_user_low -> Nullable<Uuid>,
        direct_user_high -> Nullable<Uuid>,
        last_rev -> Int8,
    }
}

diesel::table! {
    memberships (thread_id, user_id) {
        thread_id -> Uuid,
        user_id -> Uuid,
        company_id -> Uuid,
        joined_at -> Timestamptz,
        last_delivered_seq -> Int8,
        last_read_seq -> Int8,
    }
}

diesel::table! {
    // `search_words`, the generated tsvector that search reads, is left
    // out: it is never written, search reads it in SQL of its own, and a
    // 17th column would need diesel's 32-column-tables feature.
    messages (id) {
        id -> Uuid,
        thread_id -> Uuid,
        company_id -> Uuid,
        seq -> Int8,
        sender_id -> Uuid,
        client_msg_id -> Uuid,
        kind -> Text,
        body -> Nullable<Text>,
        metadata -> Nullable<Jsonb>,
        created_at -> Timestamptz,
        edited_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
        rev -> Int8,
        created_rev -> Int8,
        reply_to -> Nullable<Uuid>,
        mentions -> Array<Uuid>,
    }
}

diesel::table! {
    message_changes (thread_id, rev) {
        thread_id -> Uuid,
        rev -> Int8,
        message_id -> Uuid,
        kind -> Text,
        user_id -> Nullable<Uuid>,
        emoji -> Nullable<Text>,
        reaction_on -> Nullable<Bool>,
    }
}

diesel::table! {
    reactions (message_id, emoji, user_id) {
        message_id -> Uuid,
        emoji -> Text,
        user_id -> Uuid,
        since -> Int8,
        added -> Int8,
    }
}

diesel::table! {
    uploads (id) {
        id -> Uuid,
        company_id -> Uuid,
        uploader_id -> Uuid,
        name -> Text,
        size -> Int8,
        mime -> Text,
        sha256 -> Text,
        thumbnail_mime -> Nullable<Text>,
        thumbnail_size -> Nullable<Int8>,
        created_at -> Timestamptz,
        last_sent_at -> Timestamptz,
    }
}

diesel::table! {
    webhooks (id) {
        id -> Uuid,
        company_id -> Uuid,
        url -> Text,
        events -> Array<Text>,
        secret -> Text,
        created_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Int8,
        webhook_id -> Uuid,
        event_id -> Uuid,
        #[sql_name = "type"]
        kind -> Text,
        thread_id -> Uuid,
        body -> Text,
        created_at -> Timestamptz,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_status -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        delivered_at -> Nullable<Timestamptz>,
        failed_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(memberships -> threads (thread_id));
diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(messages -> threads (thread_id));
diesel::joinable!(reactions -> messages (message_id));
diesel::joinable!(users -> companies (company_id));
diesel::joinable!(threads -> companies (company_id));
diesel::joinable!(webhooks -> companies (company_id));
diesel::joinable!(webhook_deliveries -> webhooks (webhook_id));

diesel::allow_tables_to_appear_in_same_query!(
    companies,
    users,
    threads,
    memberships,
    messages,
    uploads,
    webhooks,
    webhook_deliveries,
    message_changes,
    reactions
);
