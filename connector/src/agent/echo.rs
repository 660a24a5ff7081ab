//! The echo agent: replies with the visitor's own text, streamed a word at a time so demos and
//! tests show streaming without a real model.

use std::time::Duration;

use async_trait::async_trait;

use super::{Agent, AgentError, AgentReply, AgentRequest, DeltaSink};

/// Echoes the visitor's message word by word, `delay` apart.
#[derive(Debug, Clone)]
pub struct EchoAgent {
    delay: Duration,
}

impl EchoAgent {
    pub fn new(delay: Duration) -> EchoAgent {
        EchoAgent { delay }
    }
}

#[async_trait]
impl Agent for EchoAgent {
    fn name(&self) -> &str {
        "echo"
    }

    async fn respond(
        &self,
        request: &AgentRequest,
        sink: &DeltaSink,
    ) -> Result<AgentReply, AgentError> {
        let text = echo_text(request);
        for (i, word) in words_with_spacing(&text).enumerate() {
            if i > 0 && !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            sink.push(word);
        }
        Ok(AgentReply { text })
    }
}

/// The visitor's text, followed by a line naming each attached file, so a message that is only
/// files still gets a reply.
fn echo_text(request: &AgentRequest) -> String {
    let mut text = request.message.text.clone();
    for file in &request.attachments {
        if !text.is_empty() {
            text.push('\n');
        }
        let reference = &file.reference;
        text.push_str(&format!(
            "Received {} ({}, {} bytes)",
            reference.filename,
            reference.content_type,
            file.data.len()
        ));
    }
    text
}

/// Splits `text` into words, each carrying the whitespace that follows it (the first also any
/// leading whitespace), so the pieces concatenate back to exactly `text`.
fn words_with_spacing(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut seen_word = false;
        let mut seen_space_after_word = false;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            if c.is_whitespace() {
                seen_space_after_word |= seen_word;
            } else if seen_space_after_word {
                end = i;
                break;
            } else {
                seen_word = true;
            }
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::DeltaSink;
    use airlock_shared::connector::SessionContext;
    use airlock_shared::{Message, MessageStatus, Role, time_from_millis};

    fn request(text: &str) -> AgentRequest {
        AgentRequest {
            attachments: Vec::new(),
            message: Message {
                id: "m1".into(),
                seq: 1,
                rev: 1,
                role: Role::User,
                text: text.into(),
                html: None,
                status: MessageStatus::Processing,
                client_id: Some("c1".into()),
                reply_to: None,
                error: None,
                attachments: Vec::new(),
                created_at: time_from_millis(0),
                updated_at: time_from_millis(0),
            },
            system_prompt: None,
            session: SessionContext {
                id: "s1".into(),
                interface: "demo".into(),
                interface_title: "Demo".into(),
                visitor_name: None,
                visitor_user_id: None,
                visitor_email: None,
                visitor_id: "v1".into(),
                page_url: None,
                page_title: None,
                referrer: None,
                locale: None,
                context: None,
                system_prompt: None,
                agent_context: None,
            },
            history: Vec::new(),
            attempt: 1,
        }
    }

    #[test]
    fn words_keep_their_spacing_so_they_rebuild_the_text_exactly() {
        let cases = [
            ("hello there", vec!["hello ", "there"]),
            ("  lead  and trail \n", vec!["  lead  ", "and ", "trail \n"]),
            ("one", vec!["one"]),
            ("   ", vec!["   "]),
            ("", vec![]),
            ("héllo\twörld ✓", vec!["héllo\t", "wörld ", "✓"]),
        ];
        for (text, expected) in cases {
            let words: Vec<&str> = words_with_spacing(text).collect();
            assert_eq!(words, expected, "{text:?}");
            assert_eq!(words.concat(), text);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn echo_streams_word_by_word_with_the_delay_and_replies_with_the_text() {
        let agent = EchoAgent::new(Duration::from_millis(40));
        let (sink, mut rx) = DeltaSink::channel();
        let started = tokio::time::Instant::now();
        let reply = agent
            .respond(&request("the quick brown fox"), &sink)
            .await
            .unwrap();
        assert_eq!(reply.text, "the quick brown fox");
        // Three pauses between four words; the clock is paused, so this is exact.
        assert_eq!(started.elapsed(), Duration::from_millis(120));
        drop(sink);
        let mut deltas = Vec::new();
        while let Some(d) = rx.recv().await {
            deltas.push(d);
        }
        assert_eq!(deltas, ["the ", "quick ", "brown ", "fox"]);
    }

    #[tokio::test]
    async fn echo_names_attached_files_so_a_file_only_message_gets_a_reply() {
        let agent = EchoAgent::new(Duration::ZERO);
        let (sink, _rx) = DeltaSink::channel();
        let mut req = request("");
        req.attachments.push(crate::agent::Attachment {
            reference: airlock_shared::AttachmentRef {
                id: "a1".into(),
                filename: "notes.txt".into(),
                content_type: "text/plain".into(),
                size: 5,
            },
            data: b"hello".to_vec(),
        });
        let reply = agent.respond(&req, &sink).await.unwrap();
        assert_eq!(reply.text, "Received notes.txt (text/plain, 5 bytes)");
        req.message.text = "see file".into();
        let reply = agent.respond(&req, &sink).await.unwrap();
        assert_eq!(
            reply.text,
            "see file\nReceived notes.txt (text/plain, 5 bytes)"
        );
    }

    #[tokio::test]
    async fn echo_without_delay_answers_at_once() {
        let agent = EchoAgent::new(Duration::ZERO);
        let (sink, _rx) = DeltaSink::channel();
        let reply = agent.respond(&request("a b c"), &sink).await.unwrap();
        assert_eq!(reply.text, "a b c");
    }
}
