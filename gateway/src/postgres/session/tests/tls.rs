//! Sessions over TLS: what the gateway writes reaches the agent whole, also when the
//! connection was full as it wrote (TLS holds records back until it is flushed).

use super::{
    fake_server::{text_column, Canned},
    start_with, Agent,
};
use pgwire::messages::{simplequery::Query, PgWireFrontendMessage as F};

#[tokio::test]
async fn a_long_result_reaches_a_tls_agent_whole_through_a_full_connection() {
    let big = "x".repeat(1 << 20);
    // Nothing classified: the rows pass unmasked, through the policy's result tracking.
    let open_policy = "version = 1\n[[identities]]\nid = \"agent\"\nremote = [\"127.0.0.0/8\"]\n\
                       [[rules]]\nid = \"all\"\neffect = \"allow\"\nidentities = [\"agent\"]\n";
    for policy in [None, Some(open_policy)] {
        let canned =
            Canned::default().rows("SELECT big", vec![text_column("big")], &[&[big.as_str()]]);
        let mut session = start_with(policy, canned, Agent::Tls { room: 16 * 1024 }).await;
        for _ in 0..3 {
            session
                .client
                .send(vec![F::Query(Query::new("SELECT big".into()))])
                .await;
            let lines = session.client.until_ready(1).await;
            let short: Vec<&str> = lines.iter().map(|l| &l[..l.len().min(40)]).collect();
            assert_eq!(lines.len(), 4, "policy: {} {short:?}", policy.is_some());
            assert_eq!(lines[1].len(), 2 + big.len(), "{short:?}");
            assert_eq!(lines[3], "Z I");
        }
    }
}
