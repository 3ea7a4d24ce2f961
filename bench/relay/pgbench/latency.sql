-- One message per transaction (autocommit): a small order event.
\set cust random(1, 100000)
SELECT txbox.publish('lat', jsonb_build_object('order_id', :client_id::bigint * 1000000000 + :scale,
          'customer_id', :cust::int, 'amount', 42.50, 'currency', 'EUR', 'status', 'new'),
          key => 'customer-' || :cust);
