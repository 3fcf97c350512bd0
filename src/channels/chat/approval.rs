//! Workflow approvals as buttons: the actions of an approval step's Approve / Reject buttons
//! and the shape of the approval id they carry. The platforms read clicks on them and hand
//! them to the [`super::Decider`] (the workflow engine), which checks who may decide.

/// The action of an Approve button (each platform adds its namespace: `conveyor_wf_approve`
/// on Slack, `conveyor:wf_approve:{id}` on Discord, `wf_approve:{id}` on Telegram).
pub const APPROVE: &str = "wf_approve";

/// The action of a Reject button.
pub const REJECT: &str = "wf_reject";

/// Whether `value` can be an approval's id: conveyor writes them as 20 lowercase letters and
/// digits; anything else did not come from its buttons.
pub fn is_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}
