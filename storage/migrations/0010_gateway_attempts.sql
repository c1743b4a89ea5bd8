-- When create-payment last sent POST /v1/payment for a payment whose answer we have not stored.
-- Set (and committed) before each call: a later attempt that finds it set knows an earlier one may have
-- made a gateway payment whose answer was lost, and looks for it on the gateway's payment list
-- (by our order id) before creating another. NULL: the gateway was never asked.
ALTER TABLE payments ADD COLUMN gateway_attempted_at timestamptz;
