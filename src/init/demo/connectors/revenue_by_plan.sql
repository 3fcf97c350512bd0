-- A gold model: `conveyor sync` materialises this query into gold.revenue_by_plan whenever
-- silver.orders or silver.customers changed. Query it with
--   conveyor sql "SELECT * FROM gold.revenue_by_plan"
SELECT
    c.plan,
    count(DISTINCT c.customer_id) AS customers,
    count(o.order_id) AS paid_orders,
    sum(o.total_usd) AS revenue_usd
FROM silver.orders o
JOIN silver.customers c ON c.customer_id = o.customer_id
WHERE o.status = 'paid'
GROUP BY c.plan
ORDER BY revenue_usd DESC
