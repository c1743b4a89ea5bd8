-- Keyset pagination of the lists (newest first, by created_at then id): each list walks one index in order
-- and starts a page strictly after the previous page's last (created_at, id).

-- A user's payments and withdrawals; these replace the (user_id, created_at DESC) indexes of 0001/0002.
CREATE INDEX payments_user_page ON payments (user_id, created_at DESC, id DESC);
DROP INDEX payments_user;
CREATE INDEX withdrawals_user_page ON withdrawals (user_id, created_at DESC, id DESC);
DROP INDEX withdrawals_user;

-- The operator's lists: withdrawals by status (or all of them), and deposits held for review.
CREATE INDEX withdrawals_status_page ON withdrawals (status, created_at DESC, id DESC);
CREATE INDEX withdrawals_page ON withdrawals (created_at DESC, id DESC);
CREATE INDEX payments_held_page ON payments (created_at, id) WHERE hold_reason IS NOT NULL;
