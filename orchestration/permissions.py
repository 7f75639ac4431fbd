"""The operator console's permissions (declared on the models' Meta) and the operators' group."""

PAUSE_DAEMON = "orchestration.pause_daemon"  # pause, resume, and switch back to PROOF
KILL_DAEMON = "orchestration.kill_daemon"  # kill and revive
SWITCH_MODE = "orchestration.switch_mode"  # go REAL
MANAGE_DLQ = "orchestration.manage_dlq"  # the verbs on actions: retry, discard, requeue now, cancel, set priority
ENQUEUE_ACTION = "orchestration.enqueue_action"
APPROVE_ACTION = "orchestration.approve_action"  # approve or reject PROOF artifacts before their REAL run
#: Create and revoke the planner's API tokens. Not given to the operators' group: a token hands a
#: program the power to propose, cancel and stop without a person at the keyboard, so who may mint
#: one is granted like SWITCH_MODE and APPROVE_ACTION, person by person (superusers have it).
MANAGE_API_TOKENS = "orchestration.manage_api_tokens"
#: Add, change and remove connected accounts (their credentials act on the world): granted like MANAGE_API_TOKENS.
MANAGE_ACCOUNTS = "orchestration.manage_accounts"
#: Delete a live post a REAL action made (the retract verb): it acts on the world, so it is granted
#: person by person like APPROVE_ACTION, not through the operators' group (superusers have it).
RETRACT_ACTION = "orchestration.retract_action"

#: Created by migration 0004 with every permission above except SWITCH_MODE, APPROVE_ACTION and MANAGE_API_TOKENS
#: (migration 0007 adds editing rate limits).
OPERATORS_GROUP = "AOL operators"
