"""The preset dictionary of record format "3": words that real listings share.

The text of a record (source, names, authority, case number) is deflated against this
dictionary (:mod:`.records`), so a word found here costs a few bits instead of 2 bytes a
character. It holds general domain vocabulary only, never words picked from test or benchmark
data: the administrative divisions every court and authority is named after (the
province-level divisions, the provincial capitals and the sub-provincial cities, as listed by
the State Council; not districts or counties), the parts of court and authority names, the
case-number vocabulary (year brackets, case-type characters), and the words most common in
registered company names. Changing a word changes every stored record: it is part of
:data:`.records.RECORD_FORMAT`.

Deflate finds a word cheapest when it is near the end of the dictionary, so the most frequent
words come last.
"""

from __future__ import annotations

_PROVINCES = (
    "北京市 天津市 上海市 重庆市 河北省 山西省 辽宁省 吉林省 黑龙江省 江苏省 浙江省 安徽省 "
    "福建省 江西省 山东省 河南省 湖北省 湖南省 广东省 海南省 四川省 贵州省 云南省 陕西省 甘肃省 "
    "青海省 台湾省 内蒙古自治区 广西壮族自治区 西藏自治区 宁夏回族自治区 新疆维吾尔自治区 "
    "香港特别行政区 澳门特别行政区 新疆生产建设兵团"
)
_CAPITALS = (
    "石家庄市 太原市 呼和浩特市 沈阳市 长春市 哈尔滨市 南京市 杭州市 合肥市 福州市 南昌市 济南市 "
    "郑州市 武汉市 长沙市 广州市 南宁市 海口市 成都市 贵阳市 昆明市 拉萨市 西安市 兰州市 西宁市 "
    "银川市 乌鲁木齐市 大连市 青岛市 宁波市 厦门市 深圳市"
)
_AUTHORITIES = (
    "最高人民法院 高级人民法院 中级人民法院 铁路运输法院 海事法院 知识产权法院 互联网法院 金融法院 "
    "人民法庭 人民检察院 税务局 市场监督管理局 应急管理局 人力资源和社会保障局 海关 财政局 "
    "生态环境局 住房和城乡建设局 交通运输局 自治州 自治县 新区 开发区 经济技术开发区 "
    "高新技术产业开发区 旗 盟 地区 县人民法院 区人民法院 市人民法院"
)
_CASES = (
    "（2015） （2016） （2017） （2018） （2019） （2020） （2021） （2022） （2023） "
    "（2024） （2025） （2026） 执恢 执保 执异 执复 执监 执 民初 民终 刑初 行初 破 号 号之一 "
    "court:spc court: tax: market: customs: 失信被执行人 限制高消费 失信联合惩戒"
)
_COMPANIES = (
    "个体工商户 合伙企业 （有限合伙） 分公司 集团 控股 股份 经营部 商行 门市部 工作室 中心 店 "
    "农业 食品 医药 健康 教育 文化传媒 广告 装饰 装饰工程 劳务 劳务派遣 人力资源 物业管理 "
    "房地产开发 置业 汽车 汽车销售 机械设备 电子 电子商务 信息技术 网络科技 软件 通信 新能源 能源 "
    "环保 环保科技 材料 化工 纺织 服装 家具 建材 钢铁 矿业 运输 物流 供应链 进出口 国际贸易 "
    "租赁 金融 担保 小额贷款 融资租赁 资产管理 咨询 企业管理 管理咨询 商务 服务 酒店 餐饮 "
    "餐饮管理 实业 发展 商贸 建筑 建筑工程 建设 建设工程 工程 投资 投资管理 管理 贸易 科技 "
    "股份有限公司 有限责任公司 有限公司"
)
_PLACES = "省 市 区 县 人民法院"

# Every word once, in the order above (most frequent words last), separated by nothing:
# deflate matches across word ends anyway, and a separator would be wasted window.
WORDS: tuple[str, ...] = tuple(
    word
    for group in (_PROVINCES, _CAPITALS, _AUTHORITIES, _CASES, _COMPANIES, _PLACES)
    for word in group.split()
)
